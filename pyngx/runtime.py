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


class Runtime:
    """Everything a worker needs to answer requests for one config.

    Attributes:
        config: the frozen config.
        routes: server and location lookup.
        plans: id(LocationConf) -> ProxyPlan for every location with proxy_pass.
        access: the access-log writer.
        session: the upstream client, set by ``start``.
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
        self.session: aiohttp.ClientSession | None = None
        self.session10: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Create the upstream sessions; call inside the event loop."""
        self.session = new_session()
        if any(p.http10 for p in self.plans.values()):
            self.session10 = new_session(aiohttp.HttpVersion10)

    def session_for(self, plan: ProxyPlan) -> aiohttp.ClientSession:
        """The session for ``plan``'s proxy_http_version."""
        session = self.session10 if plan.http10 else self.session
        assert session is not None, "Runtime.start() was not awaited"
        return session

    async def aclose(self) -> None:
        """Close the sessions' connections and the access-log files."""
        for session in (self.session, self.session10):
            if session is not None:
                await session.close()
        self.access.close()
