"""Runtime: one loaded config made ready to serve, per worker.

Owns: ``Runtime`` = ``Config`` + ``RouteTable`` + per-location
``ProxyPlan`` + the access-log files + the worker's one
``aiohttp.ClientSession`` (pooled keep-alive connections; never one per
request).

Input: a ``Config``. Output: what app.py looks up per request.
Must not: parse config or handle requests.
"""

from __future__ import annotations

from collections.abc import Iterator

import time
from typing import Any

import aiohttp

from pyngx.config.model import AccessLog, Config, LocationConf
from pyngx.log import AccessLogger
from pyngx.rewrite import if_confs
from pyngx.proxy.plan import ProxyClientRequest, ProxyPlan
from pyngx.routing import RouteTable
from pyngx.upstream.groups import Upstreams
from pyngx.upstream.peers import Peer

#: Headers aiohttp would add on its own; a proxy sends only the client's.
_SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")

#: An upstream answer's body: aiohttp stops reading the connection while
#: more than twice this many bytes wait to be passed on. The event loop
#: reads up to 256,000 bytes at a time, so at this size every read pauses
#: reading until the app has taken it: one piece per event-loop pass, at
#: most ~256 KB held per answer (aiohttp's default is 256 KiB).
READ_BUFSIZE = 2**16
#: The read buffer instead, chosen when a request (each try) goes up, if
#: at most ``FEW_REQUESTS`` requests are being proxied in the worker at
#: that moment (this one included; uploads and requests still waiting for
#: their answer's header count too). The buffer then holds two reads
#: (~512 KB) per pass, which aiohttp's ``readany`` hands on joined (one
#: copy) and the client's connection sends in one write: a lone large
#: download makes half the writes and waits for events, and in A/B runs
#: with new processes cost 5-10 % less CPU (bench/README). An answer keeps
#: the size it started with. Every request at this size would cost many
#: answers streaming at once memory and time: eight 1 MiB answers at a
#: time made 22 % fewer req/s (660 -> 516).
FEW_READ_BUFSIZE = 2**17
#: See ``FEW_READ_BUFSIZE``.
FEW_REQUESTS = 2


def iter_locations(conf: LocationConf) -> Iterator[LocationConf]:
    """``conf``, the confs of its ``if`` blocks, and every location nested in it, depth first."""
    yield conf
    yield from if_confs(conf.script)
    for loc in conf.locations:
        yield from iter_locations(loc)


async def _connect_start(session: aiohttp.ClientSession, ctx: Any, params: Any) -> None:
    ctx.connect_start = time.monotonic()


async def _connect_end(session: aiohttp.ClientSession, ctx: Any, params: Any) -> None:
    if isinstance(ctx.trace_request_ctx, list):
        ctx.trace_request_ctx.append(time.monotonic() - ctx.connect_start)


async def _connect_reuse(session: aiohttp.ClientSession, ctx: Any, params: Any) -> None:
    if isinstance(ctx.trace_request_ctx, list):
        ctx.trace_request_ctx.append(0.0)


def _connect_trace() -> aiohttp.TraceConfig:
    """Times connection set-up for $upstream_connect_time (0 for a reused connection)."""
    trace = aiohttp.TraceConfig()
    trace.on_connection_create_start.append(_connect_start)
    trace.on_connection_create_end.append(_connect_end)
    trace.on_connection_reuseconn.append(_connect_reuse)
    return trace


def new_session(
    version: aiohttp.HttpVersion = aiohttp.HttpVersion11,
    unix: str | None = None,
    keepalive_timeout: float = 60.0,
    traced: bool = False,
) -> aiohttp.ClientSession:
    """The worker's upstream client: pooled, no decompression, no cookie jar.

    Bodies pass through byte for byte (``auto_decompress=False``) and no
    cookie received from one upstream answer is ever sent on another
    client's request (``DummyCookieJar``).
    """
    connector: aiohttp.BaseConnector
    if unix is not None:
        connector = aiohttp.UnixConnector(unix, limit=0, keepalive_timeout=keepalive_timeout)
    else:
        # ssl=False: proxy_ssl_verify is off by default in nginx.
        connector = aiohttp.TCPConnector(limit=0, ssl=False, keepalive_timeout=keepalive_timeout)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=_SKIP_AUTO_HEADERS,
        timeout=aiohttp.ClientTimeout(total=None),
        read_bufsize=READ_BUFSIZE,
        requote_redirect_url=False,
        version=version,
        trace_configs=[_connect_trace()] if traced else None,
        request_class=ProxyClientRequest,
    )


class Sessions:
    """The worker's upstream sessions, shared by every Runtime across reloads,
    so that keep-alive connections survive a reload.

    One session per (proxy_http_version, UNIX socket path, keepalive_timeout):
    TCP peers share a session (its connector pools per host and port);
    each UNIX-socket peer needs a connector of its own.
    """

    def __init__(self) -> None:
        self.sessions: dict[tuple[bool, str | None, float, bool], aiohttp.ClientSession] = {}
        self.started = False
        self.in_flight = 0  # requests being proxied (proxy_http) in this worker

    def read_bufsize(self) -> int:
        """The upstream read buffer for a request about to go up.

        Returns:
            bytes: ``FEW_READ_BUFSIZE`` while at most ``FEW_REQUESTS`` are
            in flight (this one included), else ``READ_BUFSIZE``.
        """
        return FEW_READ_BUFSIZE if self.in_flight <= FEW_REQUESTS else READ_BUFSIZE

    def start(self) -> None:
        """Allow sessions to be made; call inside the event loop."""
        self.started = True

    def get(self, plan: ProxyPlan, peer: Peer | None = None) -> aiohttp.ClientSession:
        """The session for a try of ``plan`` on ``peer``."""
        up = plan.upstream
        keepalive = up.conf.keepalive_timeout if up is not None and up.conf is not None else 60.0
        unix = peer.host if peer is not None and peer.unix else None
        if unix is None and peer is None and plan.loc.proxy_pass is not None and plan.loc.proxy_pass.unix:
            unix = plan.loc.proxy_pass.host
        key = (plan.http10, unix, keepalive, plan.traced)
        session = self.sessions.get(key)
        if session is None:
            session = self.sessions[key] = new_session(
                aiohttp.HttpVersion10 if plan.http10 else aiohttp.HttpVersion11, unix, keepalive, plan.traced
            )
        return session

    async def aclose(self) -> None:
        """Close every pooled connection."""
        for session in self.sessions.values():
            await session.close()
        self.sessions.clear()


class Runtime:
    """Everything a worker needs to answer requests for one config.

    A request takes the current Runtime once and uses it to its end; a
    reload makes a new Runtime and retires the old one, which closes its
    log files when its last request (or WebSocket) ends.

    Attributes:
        config: the frozen config.
        routes: server and location lookup.
        plans: id(LocationConf) -> ProxyPlan for every location with proxy_pass.
        access: the access-log writer.
        active: requests and WebSocket sessions running on this Runtime.
        retired: a newer Runtime has replaced this one.
    """

    def __init__(self, config: Config, previous: Runtime | None = None) -> None:
        """Compile ``config``.

        Args:
            config: the config.
            previous: the Runtime being replaced: upstream peers (and their
                failure counts) of unchanged upstreams carry over.

        Raises:
            ConfigError: an upstream host does not resolve; a log file cannot be opened.
        """
        self.config = config
        self.routes = RouteTable(config)
        self.upstreams: Upstreams = Upstreams(config, previous.upstreams if previous is not None else None)
        self.plans: dict[int, ProxyPlan] = {}
        targets: list[AccessLog] = []
        for srv in config.http.servers if config.http is not None else ():
            for loc in iter_locations(srv.conf):
                targets.extend(loc.access_log)
                if loc.proxy_pass is not None:
                    plan = self.plans[id(loc)] = ProxyPlan(loc, self.upstreams.for_location(loc), self.upstreams)
                    # Connection timing costs a little per request: only when a log or header uses it.
                    plan.traced = "upstream_connect_time" in config.text
        self.access = AccessLogger()
        self.access.open_all(targets)
        self.active = 0
        self.retired = False

    def retire(self) -> None:
        """Mark as replaced; resources go when the last request ends."""
        self.retired = True
        if self.active == 0:
            self.access.close()

    def leave(self) -> None:
        """One request or session on this Runtime ended."""
        self.active -= 1
        if self.retired and self.active == 0:
            self.access.close()
