"""Where each layer came from in the user's source.

Two methods, the first preferred:

1. While archlint imports and builds the user's model, :func:`record_construction`
   wraps ``nn.Module.__init__`` and notes the first frame outside torch and archlint that
   is not the module's own ``__init__`` chain: the line that wrote ``nn.Conv1d(...)``.
2. For models built before archlint saw them (the Python API, the pytest plugin),
   :func:`locate_by_source` reads the parent class's ``__init__`` and finds the
   ``self.<name> = ...`` assignment.

Modules created by ``copy.deepcopy`` (e.g. the layers of ``nn.TransformerEncoder``) are
never constructed, so they inherit the location of their nearest located ancestor.

A layer built inside a third-party package (``transformers/models/opt/modeling_opt.py``)
is located there, but the user cannot act on that line. :func:`record_construction`
also notes the first frame outside installed packages (the user's ``build_model`` line),
and :func:`user_location` moves a finding there, onto the config argument that set the
limit when the user wrote one (``max_position_embeddings=2048``), keeping the library
line as a related location.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import inspect
import os
import sys
import sysconfig
import textwrap
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch
from torch import nn

import archlint
from archlint.graph import SourceLocation

_LIBRARY_DIRS = (
    os.path.dirname(torch.__file__) + os.sep,
    os.path.dirname(archlint.__file__) + os.sep,
    os.path.dirname(contextlib.__file__) + os.sep,  # the standard library
)
#: where installed packages live: a frame there is not the user's own code
_PACKAGE_DIRS = tuple(sorted({os.path.abspath(sysconfig.get_paths()[key]) + os.sep
                              for key in ("purelib", "platlib")}))
_PACKAGE_PARTS = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")


def display_path(filename: str) -> str:
    """A path relative to the working directory when under it, else absolute."""
    absolute = os.path.abspath(filename)
    cwd = os.getcwd() + os.sep
    return absolute[len(cwd):] if absolute.startswith(cwd) else absolute


def is_user_frame(filename: str) -> bool:
    """True for frames in the user's code (or a third-party model library)."""
    return not filename.startswith(_LIBRARY_DIRS) and not filename.startswith("<frozen")


def in_installed_package(filename: str) -> bool:
    """True for a file of an installed third-party package (site-packages)."""
    absolute = os.path.abspath(filename)
    return absolute.startswith(_PACKAGE_DIRS) or any(p in absolute for p in _PACKAGE_PARTS)


def user_caller(frame, skip_self: object | None = None,
                packages: bool = True) -> SourceLocation | None:
    """The first user frame at or above ``frame``, skipping ``skip_self``'s __init__ chain;
    with ``packages=False`` the first one outside installed packages too."""
    while frame is not None:
        code = frame.f_code
        if skip_self is not None and frame.f_locals.get("self") is skip_self:
            frame = frame.f_back
            continue
        filename = code.co_filename
        if is_user_frame(filename) and (packages or not in_installed_package(filename)):
            return SourceLocation(display_path(filename), frame.f_lineno)
        frame = frame.f_back
    return None


@dataclass
class ConstructionSites:
    """Per module object: the line that built it, and, when that line is in an installed
    package, the user's line that led there."""

    built: weakref.WeakKeyDictionary = field(default_factory=weakref.WeakKeyDictionary)
    user: weakref.WeakKeyDictionary = field(default_factory=weakref.WeakKeyDictionary)

    def get(self, module: nn.Module) -> SourceLocation | None:
        return self.built.get(module)


@contextlib.contextmanager
def record_construction() -> Iterator[ConstructionSites]:
    """Within the block, every constructed module is mapped to its construction line."""
    sites = ConstructionSites()
    original = nn.Module.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if self in sites.built:
            return
        frame = sys._getframe(1)
        location = user_caller(frame, skip_self=self)
        if location is None:
            return
        sites.built[self] = location
        if in_installed_package(location.file):
            own = user_caller(frame, skip_self=self, packages=False)
            if own is not None:
                sites.user[self] = own

    nn.Module.__init__ = init
    try:
        yield sites
    finally:
        nn.Module.__init__ = original


def user_sites(model: nn.Module, sites: ConstructionSites) -> dict[str, SourceLocation]:
    """Module path -> the user's line that built it, for modules built in a package."""
    return {path: sites.user[module] for path, module in
            model.named_modules(remove_duplicate=False) if module in sites.user}


def module_locations(model: nn.Module,
                     sites: ConstructionSites | None = None) -> dict[str, SourceLocation]:
    """Module path -> construction line, for every submodule of ``model``."""
    located: dict[str, SourceLocation] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        location = sites.get(module) if sites is not None else None
        if not path:
            location = class_location(type(module)) or location
        if location is None and path:
            parent_path, _, attr = path.rpartition(".")
            location = locate_by_source(model.get_submodule(parent_path), attr)
        if location is None:
            location = _ancestor_location(located, path)
        if location is not None:
            located[path] = location
    return located


def class_location(cls: type) -> SourceLocation | None:
    """The line of ``class X(nn.Module):`` for the root model."""
    try:
        filename = inspect.getsourcefile(cls)
        line = inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return None
    if filename is None or not is_user_frame(filename):
        return None
    return SourceLocation(display_path(filename), line)


def _ancestor_location(located: dict[str, SourceLocation], path: str) -> SourceLocation | None:
    while path:
        path = path.rpartition(".")[0]
        if path in located:
            return located[path]
    return None


def locate_by_source(parent: nn.Module, attr: str) -> SourceLocation | None:
    """The line of ``self.<attr> = ...`` in the ``__init__`` of ``parent``'s class (or bases)."""
    for cls in type(parent).__mro__:
        init = cls.__dict__.get("__init__")
        if init is None or not hasattr(init, "__code__"):
            continue
        filename = init.__code__.co_filename
        if not is_user_frame(filename):
            continue
        line = _assignment_line(init, attr)
        if line is not None:
            return SourceLocation(display_path(filename), line)
    return None


def _assignment_line(function, attr: str) -> int | None:
    try:
        lines, start = inspect.getsourcelines(function)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return None
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        for target in targets:
            if (isinstance(target, ast.Attribute) and target.attr == attr
                    and isinstance(target.value, ast.Name) and target.value.id == "self"):
                return start + node.lineno - 1
    return None


#: layer parameters that a config argument may set (a table's size, a window)
_LIMIT_PARAMS = ("max_len", "rows", "window")


def user_location(finding, graph):
    """``finding`` moved from a line inside an installed package to the user's line that
    built the module (or its nearest built ancestor), with the library line kept in
    ``related``. When the root module has a config (Hugging Face's ``model.config``)
    whose attribute equals one of the finding's ``limits`` (else its layer's size or
    window) and the user wrote that attribute as a keyword in the function that built
    the model, the finding points at the keyword."""
    location = finding.location
    if location is None or not in_installed_package(location.file) or not graph.user_sites:
        return finding
    path = (finding.layer or "").partition(":")[0]
    site = graph.user_sites.get(path)
    while site is None and path:
        path = path.rpartition(".")[0]
        site = graph.user_sites.get(path)
    site = site or graph.user_sites.get("")
    if site is None:
        return finding
    names = _config_names(getattr(graph.module, "config", None), _limits(finding, graph))
    keyword = _keyword_line(site, names) if names else None
    return dataclasses.replace(finding, location=keyword or site,
                               related=(*finding.related, location))


def _limits(finding, graph) -> set[int]:
    if finding.limits:
        return set(finding.limits)
    layer = next((layer for layer in graph.layers if layer.name == finding.layer), None)
    params = layer.params if layer is not None else {}
    return {params[key] for key in _LIMIT_PARAMS if isinstance(params.get(key), int)}


def _config_names(config: Any, limits: set[int]) -> frozenset[str]:
    """Attributes of ``config`` whose value is one of ``limits``."""
    if config is None or not limits:
        return frozenset()
    try:
        items = vars(config).items()
    except TypeError:
        return frozenset()
    return frozenset(name for name, value in items
                     if isinstance(value, int) and not isinstance(value, bool)
                     and value in limits)


def _keyword_line(site: SourceLocation, names: frozenset[str]) -> SourceLocation | None:
    """The line of a ``name=...`` keyword in the function around ``site``."""
    path = os.path.abspath(site.file)
    try:
        tree = _parsed(path, os.stat(path).st_mtime_ns)
    except OSError:
        return None
    if tree is None:
        return None
    scope = tree
    for node in ast.walk(tree):
        if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and node.lineno <= site.line <= (node.end_lineno or node.lineno)
                and (scope is tree or node.lineno > scope.lineno)):
            scope = node
    lines = sorted(node.lineno for node in ast.walk(scope)
                   if isinstance(node, ast.keyword) and node.arg in names)
    return SourceLocation(site.file, lines[0]) if lines else None


@lru_cache(maxsize=64)
def _parsed(path: str, stamp: int) -> ast.Module | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return ast.parse(handle.read())
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
