"""Lazy imports: package attributes loaded on first use, optional extras with an install hint.

:func:`lazy_attributes` keeps ``import rlm_pipeline`` cheap (no openai, no
pyspark) and lets Spark executors unpickle an :class:`~rlm_pipeline.llm.config.LLM`
without loading the client.  :func:`require` imports a package of an optional
extra (``spark``, ``validate``, ``sim``) or raises
:class:`~rlm_pipeline.errors.MissingDependencyError` with a one-line
``pip install`` hint.

Examples
--------
>>> getattr_, dir_ = lazy_attributes("pkg", {"dumps": "json"}, {}, ["dumps"])
>>> getattr_("dumps").__module__
'json'
>>> require("json", extra="none", feature="JSON").__name__
'json'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

__all__ = ["lazy_attributes", "require", "require_spark"]

#: The distribution's name as ``pip install`` takes it.
DISTRIBUTION = "rlm-pipeline"


def require(module: str, *, extra: str, feature: str, package: str | None = None) -> ModuleType:
    """Import ``module``, or raise a one-line hint naming the extra to install.

    Parameters
    ----------
    module
        The module to import (``"pyspark.sql"``).
    extra
        The extra of ``rlm-pipeline`` that installs it (``"spark"``).
    feature
        What needs it, for the message (``"Spark support"``).
    package
        The pip package to name in the message; defaults to the top-level module.

    Raises
    ------
    MissingDependencyError
        ``module`` (or something it imports) is not installed.

    Examples
    --------
    >>> require("no_such_module_xyz", extra="spark", feature="Spark support", package="pyspark")
    Traceback (most recent call last):
    ...
    rlm_pipeline.errors.MissingDependencyError: Spark support needs pyspark: pip install 'rlm-pipeline[spark]'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        from rlm_pipeline.errors import MissingDependencyError

        name = package or module.partition(".")[0]
        missing = exc.name or ""
        detail = "" if missing.partition(".")[0] == module.partition(".")[0] else f" ({exc})"
        hint = f"pip install '{DISTRIBUTION}[{extra}]'"
        msg = f"{feature} needs {name}{detail}: {hint}"
        raise MissingDependencyError(" ".join(msg.split()), extra=extra) from exc


def require_spark() -> ModuleType:
    """Import ``pyspark.sql`` or raise the ``[spark]`` install hint (see :func:`require`)."""
    return require("pyspark.sql", extra="spark", feature="Spark support", package="pyspark")


def lazy_attributes(
    package: str,
    names: Mapping[str, str],
    namespace: dict[str, Any],
    public: Sequence[str],
    submodules: Sequence[str] = (),
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` for ``package``.

    Parameters
    ----------
    package
        The package's name, for error messages and submodule imports.
    names
        Attribute name -> the module that defines it.
    namespace
        The package's ``globals()``; a resolved name is cached there.
    public
        The package's ``__all__``.
    submodules
        Submodules reachable as attributes (``rp.spark``).
    """

    def module_getattr(name: str) -> Any:
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        module = names.get(name)
        if module is None:
            msg = f"module {package!r} has no attribute {name!r}"
            raise AttributeError(msg)
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def module_dir() -> list[str]:
        return sorted(set(namespace) | set(public))

    return module_getattr, module_dir
