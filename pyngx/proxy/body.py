"""The client's side of a proxied exchange: its request body, and its leaving.

Owns: ``RequestBody`` (the client's body as an async iterator for aiohttp:
counted against client_max_body_size, each read timed by
client_body_timeout, each hand-over to the upstream by
proxy_send_timeout), ``Watch`` (why the proxy task was stopped from
outside it: the client went away, or one of those limits struck) with
the event loop's one ``Sweep`` timer, and which requests carry a body
(``has_body``) and are small enough to replay on another peer
(``small_body_length``).

Input: the request's ASGI receive and its location's ``ProxyPlan``.
Output: body chunks for aiohttp; the reason a proxy task was aborted.
Must not: talk to the upstream or answer the client (proxy/http.py does).

Source: nginx docs: ngx_http_core_module (client_max_body_size,
client_body_timeout); ngx_http_proxy_module (proxy_send_timeout,
proxy_next_upstream).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pyngx.proxy.deadline import Deadline
from pyngx.request import Request

if TYPE_CHECKING:
    from pyngx.proxy.plan import ProxyPlan

__all__ = ["REPLAY_BODY_MAX", "WATCH_DELAY", "RequestBody", "Sweep", "Watch", "has_body", "small_body_length"]

Receive = Callable[[], Awaitable[dict[str, Any]]]

#: Methods whose requests carry no body unless the client frames one.
_NO_BODY = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
#: Request bodies up to this many bytes (by Content-Length) are read before
#: the first try, so that another peer can be tried with them.
REPLAY_BODY_MAX = 64 * 1024


async def _forever() -> None:
    """Wait until cancelled (an aborted body must neither end nor fail the upload)."""
    await asyncio.get_running_loop().create_future()


#: Seconds an exchange must last before a task watches for the client leaving.
WATCH_DELAY = 0.25


class Sweep:
    """The event loop's one timer for every ``Watch`` waiting out WATCH_DELAY.

    A timer handle per request (made, then cancelled when the answer comes
    within the delay, as most do) costs more than the rest of the watch;
    here a request costs a dict insert and delete, and one timer fires
    when the oldest waiting watch is due.
    """

    _current: Sweep | None = None

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        #: Watches by the loop time they began waiting, oldest first.
        self.waiting: dict[Watch, float] = {}
        self.timer: asyncio.TimerHandle | None = None

    @classmethod
    def get(cls) -> Sweep:
        """The running loop's sweep."""
        loop = asyncio.get_running_loop()
        sweep = cls._current
        if sweep is None or sweep.loop is not loop:
            sweep = cls._current = cls(loop)
        return sweep

    def add(self, watch: Watch) -> None:
        self.waiting[watch] = self.loop.time()
        if self.timer is None:
            self.timer = self.loop.call_later(WATCH_DELAY, self._run)

    def discard(self, watch: Watch) -> None:
        self.waiting.pop(watch, None)

    def _run(self) -> None:
        self.timer = None
        due = self.loop.time() - WATCH_DELAY
        waiting = self.waiting
        # One pass over a copy: the dict's first entry found anew after each
        # deletion would be a walk past the deleted slots every time.
        for watch, since in list(waiting.items()):
            if since > due:
                self.timer = self.loop.call_at(since + WATCH_DELAY, self._run)
                return
            del waiting[watch]
            watch.spawn()


class Watch:
    """Why the proxy task was stopped from outside it.

    ``reason`` is None while all is well, else "gone" (the client went
    away: 499), "too_large" (client_max_body_size: 413), "body_timeout"
    (client_body_timeout: 408) or "send_timeout" (proxy_send_timeout: 504).
    The first reason wins; ``abort`` cancels the proxy task, so that
    whatever it awaits (the upstream's answer, a send) stops at once.
    """

    __slots__ = ("task", "watcher", "receive", "sweep", "reason", "active")
    sweep: Sweep  # set by start()

    def __init__(self) -> None:
        self.task = asyncio.current_task()
        self.watcher: asyncio.Task[None] | None = None
        #: The request's receive while the sweep holds this watch (not yet spawned).
        self.receive: Receive | None = None
        self.reason: str | None = None
        #: False once the last body byte is handed to the server: a
        #: disconnect after that is the normal end of the exchange.
        self.active = True

    @property
    def gone(self) -> bool:
        return self.reason is not None

    def start(self, receive: Receive) -> None:
        """Watch for the client going away once its body has been read.

        The watching task starts only if the exchange lasts WATCH_DELAY:
        most answers come sooner, and a task per request is the largest
        single cost pyngx adds to a small request. A client that leaves
        earlier is noticed when the delay ends.
        """
        if self.watcher is None and self.receive is None:
            self.receive = receive
            self.sweep = Sweep.get()
            self.sweep.add(self)

    def spawn(self) -> None:
        """Start the watching task (the sweep found the exchange WATCH_DELAY old)."""
        receive, self.receive = self.receive, None
        if receive is not None and self.active and self.reason is None:
            self.watcher = asyncio.get_running_loop().create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.abort("gone")

    def abort(self, reason: str) -> None:
        if self.active and self.reason is None and self.task is not None:
            self.reason = reason
            self.task.cancel()

    def stop(self) -> None:
        if self.receive is not None:
            self.receive = None
            self.sweep.discard(self)
        if self.watcher is not None and not self.watcher.done():
            self.watcher.cancel()


class RequestBody:
    """The client's request body as an async iterator for aiohttp.

    Each read waits at most client_body_timeout; the bytes are counted
    against client_max_body_size; each chunk handed up must be taken by the
    upstream within proxy_send_timeout. On any of these the proxy task is
    aborted (``Watch``) and the iterator never ends, so that the upstream
    sees a cut request, never a shorter complete one.

    Each timeout is a ``Deadline`` (armed per wait, its timer re-armed only
    when it fires), not a timer per chunk.

    ``done`` turns true after the last chunk; ``drain()`` reads and drops
    what is left when the upstream answered before taking it all (nginx
    discards the rest of the body the same way), so that the connection is
    never left with a body nobody reads.
    """

    __slots__ = ("receive", "watch", "done", "started", "count", "plan", "last", "deadlines")

    def __init__(self, receive: Receive, watch: Watch, plan: ProxyPlan) -> None:
        self.receive = receive
        self.watch = watch
        self.plan = plan
        self.done = False
        #: A chunk went up: the body can no longer be sent to another peer.
        self.started = False
        #: Bytes read so far, and the size of the last chunk.
        self.count = 0
        self.last = 0
        #: The timers of the iterators made so far (``stop`` cancels them).
        self.deadlines: list[Deadline] = []

    def stop(self) -> None:
        """No more waits: cancel the timers."""
        for deadline in self.deadlines:
            deadline.cancel()

    async def chunks(self, send_timed: bool = False) -> AsyncIterator[bytes]:
        """The body's chunks as they arrive (limits applied).

        Args:
            send_timed: time each chunk's hand-over with proxy_send_timeout
                (the iterator that feeds the upstream).
        """
        limit = self.plan.max_body
        loop = asyncio.get_running_loop()
        watch = self.watch
        reading = Deadline(loop, self.plan.body_timeout or 0, lambda: watch.abort("body_timeout"))
        sending = Deadline(loop, (self.plan.send_timeout or 0) if send_timed else 0,
                           lambda: watch.abort("send_timeout"))
        self.deadlines += (reading, sending)
        try:
            while not self.done:
                reading.arm()
                msg = await self.receive()
                reading.disarm()
                if msg["type"] == "http.disconnect":
                    self.done = True
                    self.watch.abort("gone")
                    await _forever()
                chunk = msg.get("body", b"")
                self.count += len(chunk)
                self.last = len(chunk)
                if limit and self.count > limit:
                    self.watch.abort("too_large")
                    await _forever()
                if not msg.get("more_body", False):
                    self.done = True
                    self.watch.start(self.receive)
                if chunk:
                    if send_timed:
                        self.started = True
                        sending.arm()
                    yield chunk  # resumes when the upstream connection took the chunk
                    sending.disarm()
        finally:
            self.stop()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.chunks(send_timed=True)

    async def read_all(self) -> bytes:
        """Read the whole body (limits applied)."""
        return b"".join([chunk async for chunk in self.chunks()])

    async def discard(self) -> None:
        """Read the whole body and drop it (limits applied)."""
        async for _ in self.chunks():
            pass

    async def drain(self) -> None:
        while not self.done:
            msg = await self.receive()
            if msg["type"] == "http.disconnect" or not msg.get("more_body", False):
                self.done = True


def has_body(req: Request) -> bool:
    """The client sends a body: framed by Transfer-Encoding or a Content-Length
    other than 0, or, over HTTP/2 (whose bodies need neither field), with a
    method that may carry one.

    Source: RFC 9112 6.3 (message body length); RFC 9113 8.1.
    """
    te = req.header_map.get("transfer-encoding")
    if te is not None:
        return True
    cl = req.header_map.get("content-length")
    if cl is not None and cl != "0":
        return True
    return req.method not in _NO_BODY and req.protocol == "HTTP/2.0"


def small_body_length(req: Request) -> bool:
    """The body has a Content-Length small enough to read first and replay."""
    length = req.header_map.get("content-length")
    if length is None or "transfer-encoding" in req.header_map or not length.isdigit():
        return False
    return int(length) <= REPLAY_BODY_MAX
