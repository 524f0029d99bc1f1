"""Finding the model in a user's file or package.

Targets: ``model.py`` (discovery), ``model.py:NAME`` (a factory, instance or class),
``package.module:attr``. Discovery order in a file, first hit wins:

1. a factory function ``build_model()`` or ``get_model()``;
2. a module-level ``nn.Module`` instance (several: an error listing them);
3. the single ``nn.Module`` subclass defined in the file that constructs with no
   arguments (several: an error listing them).

Every failure is an :class:`ArchlintError` naming the file and what to do.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import types
from typing import Any

from torch import nn

from archlint.errors import ArchlintError
from archlint.guard import describe
from archlint.target import Target, parse_target

__all__ = ["Target", "parse_target", "import_target", "find_model"]

FACTORIES = ("build_model", "get_model")


def import_target(target: Target) -> types.ModuleType:
    """Import the file or module; user errors become one-line ArchlintErrors."""
    try:
        if target.module_name is not None:
            return importlib.import_module(target.module_name)
        return _import_file(target.path)
    except ArchlintError:
        raise
    except SyntaxError as exc:
        where = f"{exc.filename}:{exc.lineno}" if exc.lineno else target.label
        raise ArchlintError(f"{where}: syntax error: {exc.msg}; fix the model file") from exc
    except ModuleNotFoundError as exc:
        raise ArchlintError(
            f"{target.label}: cannot import {exc.name!r}; install it or fix the import") from exc
    except Exception as exc:  # noqa: BLE001 - anything the user's module raises at import
        raise ArchlintError(
            f"{target.label}: importing it raised {describe(exc)}; "
            "fix the error (run with --debug for the traceback)") from exc


def _import_file(path: str) -> types.ModuleType:
    directory = os.path.dirname(os.path.abspath(path))
    name = "archlint_user_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ArchlintError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, directory)   # so the model file can import its siblings
    cwd = os.getcwd()
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        if directory in sys.path:
            sys.path.remove(directory)
        if os.getcwd() != cwd:      # paths in the report stay relative to where archlint ran
            os.chdir(cwd)
    return module


def find_model(namespace: types.ModuleType, target: Target) -> tuple[nn.Module, str]:
    """The model object and the name it was found under."""
    if target.attr:
        if not hasattr(namespace, target.attr):
            raise ArchlintError(f"{target.label}: no attribute {target.attr!r}")
        return _materialize(getattr(namespace, target.attr), target.attr, target), target.attr
    for factory in FACTORIES:
        if callable(getattr(namespace, factory, None)):
            return _materialize(getattr(namespace, factory), factory, target), factory
    defined_here = [
        (name, value) for name, value in vars(namespace).items()
        if not name.startswith("_")
    ]
    instances = [(n, v) for n, v in defined_here if isinstance(v, nn.Module)]
    if len(instances) == 1:
        return instances[0][1], instances[0][0]
    if len(instances) > 1:
        raise _ambiguous(target, "instances", [n for n, _ in instances])
    classes = [
        (n, v) for n, v in defined_here
        if inspect.isclass(v) and issubclass(v, nn.Module)
        and v.__module__ == namespace.__name__
    ]
    constructible = [(n, v) for n, v in classes if _takes_no_arguments(v)]
    if len(constructible) == 1:
        name, cls = constructible[0]
        return _materialize(cls, name, target), name
    if len(constructible) > 1:
        raise _ambiguous(target, "classes", [n for n, _ in constructible])
    if classes:
        names = ", ".join(n for n, _ in classes)
        raise ArchlintError(
            f"{target.label}: {names} need constructor arguments; add a build_model() "
            f"function that returns the model, or name one with {target.label}:NAME")
    raise ArchlintError(
        f"{target.label}: no model found; define build_model(), a module-level nn.Module "
        "instance, or an nn.Module subclass")


def _ambiguous(target: Target, what: str, names: list[str]) -> ArchlintError:
    listing = ", ".join(sorted(names))
    return ArchlintError(
        f"{target.label}: several model {what} ({listing}); pick one with "
        f"{target.label}:NAME or define build_model()")


def _takes_no_arguments(cls: type) -> bool:
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in signature.parameters.values()
    )


def _materialize(obj: Any, name: str, target: Target) -> nn.Module:
    """An instance from an instance, a class or a factory."""
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise ArchlintError(f"{target.label}:{name} is not an nn.Module, class or factory")
    if inspect.isclass(obj) and not issubclass(obj, nn.Module):
        raise ArchlintError(f"{target.label}:{name} is a class but not an nn.Module subclass")
    if not _takes_no_arguments(obj):
        raise ArchlintError(
            f"{target.label}:{name} needs arguments; add a build_model() function that "
            "constructs the model with its arguments")
    try:
        model = obj()
    except Exception as exc:  # noqa: BLE001 - the user's constructor
        raise ArchlintError(
            f"{target.label}:{name}() raised {describe(exc)}; fix the constructor "
            "(run with --debug for the traceback)") from exc
    if not isinstance(model, nn.Module):
        raise ArchlintError(
            f"{target.label}:{name}() returned {type(model).__name__}, not an nn.Module")
    return model
