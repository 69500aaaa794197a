"""Lazy package attributes (PEP 562): ``import headstart`` and the command line start without torch.

A package lists its public names and where each lives; the module is imported the first time the name is used.
Library modules keep their heavy imports (torch, timm, scikit-learn, matplotlib) for the code paths that need them.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable

__all__ = ["attach"]


def attach(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``; ``names`` maps a public name to ``".module:attribute"``."""

    def __getattr__(name: str) -> Any:
        try:
            module, _, attr = names[name].partition(":")
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module, package), attr)
        setattr(sys.modules[package], name, value)  # resolved once; later lookups are plain attribute reads
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
