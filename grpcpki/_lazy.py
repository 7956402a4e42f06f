"""Lazy re-exports for a package's ``__init__`` (PEP 562).

``from grpcpki.greeter import GreeterServer`` loads grpc, and ``from grpcpki.diagnosis import
probe`` the whole doctor, only when the name is first used: commands that never need them start
fast (the developers' guide: import grpc lazily). The packages list their names in ``__all__``
and import them under ``TYPE_CHECKING``, so linters and type checkers see the re-exports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose name N lives in its submodule
    ``exports[N]``: imported on first use, then kept in ``namespace`` (the package's globals())
    so the next lookup is a plain dictionary hit."""

    def module_getattr(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def module_dir() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return module_getattr, module_dir


__all__ = ["lazy_exports"]
