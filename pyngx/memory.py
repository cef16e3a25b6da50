"""Keeping the daemon's resident memory down.

Owns: ``hidden()``, which keeps a library from loading optional packages
that it imports when installed but that pyngx never makes it use (lark:
``regex``; structlog: ``colorama``). Each such module stays resident for
the daemon's whole life. ``settle()``, which takes what lives as long as
the config out of the cyclic garbage collector's reach and makes its
young-generation collections rare. ``tune_malloc()``,
which keeps glibc's allocator from handing memory back to the kernel and
faulting it in again with every body chunk.

Must not: hide a package that the importing library needs for what pyngx
asks of it.
"""

from __future__ import annotations

import gc
import os
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


#: Net container allocations that start a young-generation (0) collection;
#: CPython's default is 700 (see ``settle``).
YOUNG_THRESHOLD = 7_000


def settle(reloaded: bool = False) -> None:
    """Exempt the objects alive now (modules, the config, its Runtime) from
    the cyclic garbage collector (``gc.freeze``), and collect the young
    generation every ``YOUNG_THRESHOLD`` net allocations instead of 700.

    They live as long as the process or the config, and a full collection
    walks every tracked object: about 20 ms with the event loop stopped,
    which is what the slowest requests (p99) wait. Frozen, they are no
    longer walked. Call when serving starts, and with ``reloaded`` after a
    reload: the objects frozen before go back to the collector, one full
    collection frees the old config's cycles, and what lives now is frozen.

    Young collections: a request proxied without error leaves no cyclic
    garbage (a failed try leaves its exception's frames), yet at
    700 one ran every ~15 requests at 32 connections (~150 µs each, about
    3 % of a small request's CPU; callgrind: about 43,000 of 1.2 million
    instructions per request). They are set off by the requests in flight:
    their objects survive a collection, and once they are freed after it
    their frees no longer count against the allocations that follow. At
    7,000 no young collection ran in 24,000 requests at 32 connections. Real
    cyclic garbage is still collected, once at most that many container
    objects have gathered. The older generations keep their
    thresholds (10, 10).

    Source: Python docs, ``gc`` module (freeze, set_threshold).
    """
    if reloaded:
        gc.unfreeze()
        gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)


#: glibc's mallopt() parameter numbers (<malloc.h>).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3

#: Blocks up to this many bytes come from the heap; larger ones get an
#: mmap() of their own, unmapped when freed (glibc: 128 KiB, raised to the
#: size of each larger block freed, up to 32 MiB).
MMAP_THRESHOLD = 2**20

#: Free memory at the top of the heap goes back to the kernel only past
#: this many bytes (glibc: 128 KiB, then twice the mmap threshold, as here).
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD

#: Set, the user's own choice wins (glibc reads these at start).
_USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
_USER_TUNABLES = ("glibc.malloc.trim_threshold", "glibc.malloc.mmap_threshold")


def tune_malloc() -> bool:
    """Keep the C heap's free memory for the next body chunk (glibc only).

    A proxied body passes through in 64 KiB buffers that are allocated and
    freed one after another at the top of the C heap. With glibc's default
    thresholds, a free that leaves more than 128 KiB free at the top
    shrinks the heap (brk) and the next allocation grows it again, the
    kernel handing out fresh zeroed pages: measured on a 256 MiB upload,
    ~3,000 brk calls and ~90,000 page faults, a third to a half more CPU
    time for the upload.
    Whether a process falls into that pattern depends on where its heap's
    free holes happen to be. This sets the thresholds where glibc's own
    adaptive rule would take them after freeing a 1 MiB block: buffers up
    to 1 MiB on the heap (``MMAP_THRESHOLD``), 2 MiB of free top kept
    (``TRIM_THRESHOLD``). Setting them also stops the adapting, which
    would otherwise give a block just over the threshold an mmap() and
    munmap() of its own each time.

    Call once, before serving. Does nothing when the user set either
    threshold (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``, or
    their ``glibc.malloc.`` tunables in ``GLIBC_TUNABLES``) or the C
    library has no ``mallopt`` (musl's does nothing). Loading ctypes for
    the call costs the process about 0.2 MiB.

    Returns:
        True when both thresholds were set.

    Source: glibc manual, "Malloc Tunable Parameters"; mallopt(3).
    """
    if sys.platform != "linux" or any(name in os.environ for name in _USER_SETTINGS):
        return False
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if any(name in tunables for name in _USER_TUNABLES):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - no C library symbols to look up
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
