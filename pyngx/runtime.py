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

import aiohttp

from pyngx.config.model import Config, LocationConf
from pyngx.log import AccessLogger
from pyngx.proxy.http import ProxyPlan
from pyngx.routing import RouteTable

#: Headers aiohttp would add on its own; a proxy sends only the client's.
_SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


def iter_locations(conf: LocationConf) -> Iterator[LocationConf]:
    """``conf`` and every location nested in it, depth first."""
    yield conf
    for loc in conf.locations:
        yield from iter_locations(loc)


def new_session(version: aiohttp.HttpVersion = aiohttp.HttpVersion11) -> aiohttp.ClientSession:
    """The worker's upstream client: pooled, no decompression, no cookie jar.

    Bodies pass through byte for byte (``auto_decompress=False``) and no
    cookie received from one upstream answer is ever sent on another
    client's request (``DummyCookieJar``).
    """
    connector = aiohttp.TCPConnector(limit=0, ssl=False, keepalive_timeout=60, enable_cleanup_closed=True)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=_SKIP_AUTO_HEADERS,
        timeout=aiohttp.ClientTimeout(total=None),
        read_bufsize=2**16,
        requote_redirect_url=False,
        version=version,
    )


class Sessions:
    """The worker's upstream sessions, shared by every Runtime across reloads,
    so that keep-alive connections survive a reload."""

    def __init__(self) -> None:
        self.http11: aiohttp.ClientSession | None = None
        self.http10: aiohttp.ClientSession | None = None

    def start(self) -> None:
        """Create the HTTP/1.1 session; call inside the event loop."""
        if self.http11 is None:
            self.http11 = new_session()

    def get(self, plan: ProxyPlan) -> aiohttp.ClientSession:
        """The session for ``plan``'s proxy_http_version."""
        if plan.http10:
            if self.http10 is None:
                self.http10 = new_session(aiohttp.HttpVersion10)
            return self.http10
        if self.http11 is None:
            self.http11 = new_session()
        return self.http11

    async def aclose(self) -> None:
        """Close every pooled connection."""
        for session in (self.http11, self.http10):
            if session is not None:
                await session.close()
        self.http11 = self.http10 = None


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

    def __init__(self, config: Config) -> None:
        self.config = config
        self.routes = RouteTable(config)
        self.plans: dict[int, ProxyPlan] = {}
        targets = []
        for srv in config.http.servers if config.http is not None else ():
            for loc in iter_locations(srv.conf):
                targets.extend(loc.access_log)
                if loc.proxy_pass is not None:
                    self.plans[id(loc)] = ProxyPlan(loc)
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
