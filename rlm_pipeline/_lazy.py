"""Lazy package attributes: import a name's module only when the name is first used.

Keeps ``import rlm_pipeline`` cheap (no openai, no pyspark) and lets Spark
executors unpickle an :class:`~rlm_pipeline.llm.config.LLM` without loading
the client.

Examples
--------
>>> getattr_, dir_ = lazy_attributes("pkg", {"dumps": "json"}, {}, ["dumps"])
>>> getattr_("dumps").__module__
'json'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_attributes"]


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
