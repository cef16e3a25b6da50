"""The configuration language: parse (syntax), directives (table), build (meaning).

``load`` and ``Config`` are imported on first use (PEP 562), so that the
parser's child process (child.py) imports only parse.py and what it needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyngx.config.build import load
    from pyngx.config.model import Config

__all__ = ["Config", "load"]


def __getattr__(name: str) -> object:
    value: object
    if name == "load":
        from pyngx.config.build import load

        value = load
    elif name == "Config":
        from pyngx.config.model import Config

        value = Config
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
