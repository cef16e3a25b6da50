"""A lazily re-armed timeout, as nginx's timers for reads and writes.

Owns: ``Deadline``, the timer pyngx puts on waits that happen per chunk or
per message (an upstream's response body, a WebSocket's messages), where
an event-loop timer made and cancelled on every wait would cost more than
the wait's own work.

Source: nginx src/event/ngx_event_timer.h (ngx_event_add_timer,
NGX_TIMER_LAZY_DELAY).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def _done() -> None:
    """The ``expire`` of a deadline that is cancelled or was given none."""


class Deadline:
    """One nginx-style timer: armed while an operation is pending, it calls
    ``expire`` once the operation has been pending ``timeout`` seconds.

    Arming stores a timestamp; the event-loop timer is rescheduled lazily
    when it fires early, so each relayed message costs no timer churn
    (compare nginx's NGX_TIMER_LAZY_DELAY).

    Args:
        loop: the running event loop.
        timeout: seconds an operation may stay pending (0: never expires).
        expire: called (once per expiry, from the event loop) when it has;
            none is needed with timeout 0.
    """

    __slots__ = ("loop", "timeout", "expire", "since", "handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, expire: Callable[[], None] = _done) -> None:
        self.loop = loop
        self.timeout = timeout
        self.expire = expire
        self.since: float | None = None
        self.handle: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        self.since = self.loop.time()
        if self.handle is None and self.timeout > 0:
            self.handle = self.loop.call_at(self.since + self.timeout, self._check)

    def touch(self) -> None:
        """Restart the period if armed (activity elsewhere on the connection)."""
        if self.since is not None:
            self.since = self.loop.time()

    def disarm(self) -> None:
        self.since = None

    def cancel(self) -> None:
        """Stop for good: the operation is over. ``expire`` is dropped (it
        usually refers back to the deadline's owner: no cycle outlives it)."""
        self.since = None
        self.expire = _done
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _check(self) -> None:
        self.handle = None
        if self.since is None:
            return
        due = self.since + self.timeout
        if self.loop.time() >= due:
            self.expire()
        else:
            self.handle = self.loop.call_at(due, self._check)
