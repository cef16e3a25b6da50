"""Hot reload: what changed between two configs, and watching the files.

Owns: ``changes()`` (servers and locations added, removed, changed, for
the reload log line) and ``watch()`` (watchfiles over the main config and
every file it includes, debounced so that an editor's save gives one
reload and a half-written file never becomes the live config).

The reload itself (build a new Runtime, swap, drain) belongs to server.py,
which calls ``watch`` with its reload callback.

Must not: build runtimes or touch sockets.

Source: nginx src/os/unix/ngx_process_cycle.c (reload on SIGHUP: a bad
config keeps the old one serving).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any
from pathlib import Path

from watchfiles import Change
from watchfiles import watch as watch_files

from pyngx.config.build import file_stamps
from pyngx.config.model import Config, LocationConf, ServerConf

#: watchfiles' window: changes less than STEP ms apart are one burst;
#: a burst is cut at DEBOUNCE ms.
STEP_MS = 150
DEBOUNCE_MS = 1600


def _server_key(srv: ServerConf) -> str:
    listens = ",".join(sorted(str(lst) for lst in srv.listens))
    names = " ".join(n or '""' for n in srv.server_names)
    return f"{listens} {names}"


def _locations(conf: LocationConf, prefix: str = "") -> dict[str, LocationConf]:
    out: dict[str, LocationConf] = {}
    for loc in conf.locations:
        key = f"{prefix}{loc.modifier} {loc.name}".strip()
        out[key] = loc
        out.update(_locations(loc, key + " > "))
    return out


def _same(a: LocationConf, b: LocationConf) -> bool:
    # File positions move when lines are added above; nested ones are compared on their own.
    return dataclasses.replace(a, file="", line=0, locations=()) == dataclasses.replace(b, file="", line=0, locations=())


def changes(old: Config, new: Config) -> str:
    """A one-line summary of what a reload changes.

    Returns:
        e.g. ``servers +1 -0 ~0; locations +2 -1 ~1 (+ "/api/" on 127.0.0.1:8080 app)``,
        or "no changes".
    """
    olds = {_server_key(s): s for s in (old.http.servers if old.http else ())}
    news = {_server_key(s): s for s in (new.http.servers if new.http else ())}
    added = [k for k in news if k not in olds]
    removed = [k for k in olds if k not in news]
    changed_servers = 0
    loc_add: list[str] = []
    loc_del: list[str] = []
    loc_mod: list[str] = []
    for key in news.keys() & olds.keys():
        a, b = olds[key].conf, news[key].conf
        if not _same(a, b):
            changed_servers += 1
        la, lb = _locations(a), _locations(b)
        loc_add += [f'"{k}" in {key}' for k in lb if k not in la]
        loc_del += [f'"{k}" in {key}' for k in la if k not in lb]
        loc_mod += [f'"{k}" in {key}' for k in lb.keys() & la.keys() if not _same(la[k], lb[k])]
    if not (added or removed or changed_servers or loc_add or loc_del or loc_mod):
        main_changed = dataclasses.replace(old, files=(), text="", http=None) != dataclasses.replace(
            new, files=(), text="", http=None
        )
        return "main settings changed" if main_changed else "no changes"
    parts = [f"servers +{len(added)} -{len(removed)} ~{changed_servers}",
             f"locations +{len(loc_add)} -{len(loc_del)} ~{len(loc_mod)}"]
    detail = [f"+server {k}" for k in added] + [f"-server {k}" for k in removed]
    detail += [f"+{x}" for x in loc_add] + [f"-{x}" for x in loc_del] + [f"~{x}" for x in loc_mod]
    return "; ".join(parts) + (f" ({', '.join(detail[:10])}{', ...' if len(detail) > 10 else ''})" if detail else "")


def stamps(files: tuple[Path, ...]) -> tuple[tuple[Path, int, int], ...]:
    """(path, mtime_ns, size) of each file, as Config.stamps holds them."""
    return file_stamps(files)


#: After the watcher starts, seconds until the files are compared with the
#: stamps taken at load: an edit made before the watcher was ready is not lost.
CATCH_UP_DELAY = 0.3


async def watch(files: Callable[[], tuple[Path, ...]], on_change: Callable[[], Awaitable[Any]],
                stop: asyncio.Event, loaded: Callable[[], tuple[tuple[Path, int, int], ...]] | None = None) -> None:
    """Call ``on_change`` once per burst of edits to any of ``files()``.

    Watches the directories that hold the files (so that an editor's
    rename-over is seen) and re-reads ``files()`` after each change, since a
    reload may add or drop includes. A burst of saves (several files, or
    truncate-then-write) within STEP_MS of each other gives one call.

    Args:
        files: the current set of config files (absolute paths).
        on_change: the reload coroutine.
        stop: set to end watching.
        loaded: the stamps of the files as they were when last loaded; an
            edit between loading and the watcher being ready causes a reload.
    """
    catch_up = None
    if loaded is not None:
        async def check() -> None:
            await asyncio.sleep(CATCH_UP_DELAY)
            if stamps(files()) != loaded():
                await on_change()

        catch_up = asyncio.ensure_future(check())
    try:
        await _watch(files, on_change, stop)
    finally:
        if catch_up is not None:
            catch_up.cancel()


async def _watch(files: Callable[[], tuple[Path, ...]], on_change: Callable[[], Awaitable[Any]],
                 stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        watched = {p.resolve() for p in files()}
        dirs = sorted({str(p.parent) for p in watched if p.parent.exists()})
        if not dirs:
            return
        restart = asyncio.Event()

        def interesting(change: Change, path: str, watched: set[Path] = watched) -> bool:
            return Path(path).resolve() in watched or Path(path) in watched

        # watchfiles' blocking watch() runs in a worker thread, checking the
        # event every STEP_MS. Its awatch() does the same through anyio, whose
        # asyncio backend costs about 1 MiB of resident memory to load.
        bursts = watch_files(*dirs, watch_filter=interesting, debounce=DEBOUNCE_MS, step=STEP_MS,
                             stop_event=_Either(stop, restart), recursive=False)
        try:
            while await loop.run_in_executor(None, next, bursts, None) is not None:
                await on_change()
                if {p.resolve() for p in files()} != watched:
                    restart.set()
        finally:
            restart.set()  # when cancelled: the thread sees it within STEP_MS and ends


class _Either:
    """Set when either of two asyncio.Events is set (read by watchfiles' thread)."""

    def __init__(self, a: asyncio.Event, b: asyncio.Event) -> None:
        self.a, self.b = a, b

    def is_set(self) -> bool:
        return self.a.is_set() or self.b.is_set()
