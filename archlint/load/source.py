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
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import os
import sys
import textwrap
import weakref
from collections.abc import Iterator

import torch
from torch import nn

import archlint
from archlint.graph import SourceLocation

_LIBRARY_DIRS = (
    os.path.dirname(torch.__file__) + os.sep,
    os.path.dirname(archlint.__file__) + os.sep,
    os.path.dirname(contextlib.__file__) + os.sep,  # the standard library
)


def display_path(filename: str) -> str:
    """A path relative to the working directory when under it, else absolute."""
    absolute = os.path.abspath(filename)
    cwd = os.getcwd() + os.sep
    return absolute[len(cwd):] if absolute.startswith(cwd) else absolute


def is_user_frame(filename: str) -> bool:
    """True for frames in the user's code (or a third-party model library)."""
    return not filename.startswith(_LIBRARY_DIRS) and not filename.startswith("<frozen")


def user_caller(frame, skip_self: object | None = None) -> SourceLocation | None:
    """The first user frame at or above ``frame``, skipping ``skip_self``'s __init__ chain."""
    while frame is not None:
        code = frame.f_code
        if skip_self is not None and frame.f_locals.get("self") is skip_self:
            frame = frame.f_back
            continue
        if is_user_frame(code.co_filename):
            return SourceLocation(display_path(code.co_filename), frame.f_lineno)
        frame = frame.f_back
    return None


@contextlib.contextmanager
def record_construction() -> Iterator[weakref.WeakKeyDictionary]:
    """Within the block, every constructed module is mapped to its construction line."""
    sites: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    original = nn.Module.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        location = user_caller(sys._getframe(1), skip_self=self)
        if location is not None and self not in sites:
            sites[self] = location

    nn.Module.__init__ = init
    try:
        yield sites
    finally:
        nn.Module.__init__ = original


def module_locations(model: nn.Module,
                     sites: weakref.WeakKeyDictionary | None = None) -> dict[str, SourceLocation]:
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
