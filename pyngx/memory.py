"""Keeping the daemon's resident memory down.

Owns: ``hidden()``, which keeps a library from loading optional packages
that it imports when installed but that pyngx never makes it use (lark:
``regex``; structlog: ``colorama``). Each such module stays resident for
the daemon's whole life. ``settle()``, which takes what lives as long as
the config out of the cyclic garbage collector's reach.

Must not: hide a package that the importing library needs for what pyngx
asks of it.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def hidden(*names: str) -> Iterator[None]:
    """Make ``import NAME`` fail with ImportError inside the ``with`` block.

    For libraries that import an optional package when it is installed
    (``try: import x except ImportError: x = None``). A None entry in
    sys.modules is Python's documented way to block an import; the previous
    entries are put back afterwards, so later importers see the package.

    Args:
        names: top-level module names, e.g. "regex".
    """
    saved = {name: sys.modules.get(name) for name in names}
    for name in names:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module


def settle(reloaded: bool = False) -> None:
    """Exempt the objects alive now (modules, the config, its Runtime) from
    the cyclic garbage collector (``gc.freeze``).

    They live as long as the process or the config, and a full collection
    walks every tracked object: about 20 ms with the event loop stopped,
    which is what the slowest requests (p99) wait. Frozen, they are no
    longer walked. Call when serving starts, and with ``reloaded`` after a
    reload: the objects frozen before go back to the collector, one full
    collection frees the old config's cycles, and what lives now is frozen.
    """
    if reloaded:
        gc.unfreeze()
        gc.collect()
    gc.freeze()
