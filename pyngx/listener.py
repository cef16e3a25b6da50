"""Serving the listen addresses that pyngx.tls plans: TLS and HTTP/2 (h2c).

Owns:

- ``Listener``: pyngx's own accept loop for a TLS or h2c address
  (Hypercorn's ``worker_serve`` serves plain HTTP/1.1 ones): the TLS
  handshake with the plan current at accept (``update`` swaps plans on
  reload), its failures logged at info with the client's address as nginx
  words them, then Hypercorn's ``TCPServer`` speaks HTTP/1.1 or HTTP/2
  (by ALPN, or the preface on h2c); graceful stop as ``worker_serve``;
- ``TLSInfo``: a connection's TLS facts, put into every request's ASGI
  scope (``SCOPE_KEY``) for the ``$ssl_*`` variables;
- the h2c rules for Hypercorn's HTTP/1.1 protocol (``_h2c_policy``,
  installed on import);
- ``refusal``: nginx's 400 when ``ssl_verify_client on`` gets no certificate.

Input: a ``ListenPlan`` (pyngx.tls), a listening socket, the ASGI app.
Output: served connections; ``TLSInfo`` in scopes.
Must not: read certificates or config (pyngx.tls, config/), route or proxy.

Source: nginx docs: ngx_http_ssl_module ("Embedded Variables", "Error
Processing"), ngx_http_v2_module; src/event/ngx_event_openssl.c
(ngx_ssl_handshake, ngx_ssl_connection_error).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from hypercorn.asyncio.lifespan import Lifespan
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config as HypercornConfig
from hypercorn.protocol.h11 import H2ProtocolAssumedError, H11Protocol
from hypercorn.typing import AppWrapper

from pyngx import log as pyngx_log
from pyngx.config.model import ServerConf
from pyngx.responses import server_header
from pyngx.tls import ListenPlan, ssl_reason

#: The key of the ASGI scope's "extensions" that holds a connection's ``TLSInfo``.
SCOPE_KEY = "pyngx.tls"
#: nginx's http2_max_concurrent_streams default.
H2_MAX_STREAMS = 128


# --- connections --------------------------------------------------------------------

# Long attribute names of getpeercert() -> RFC 2253 short names (OpenSSL's).
_DN_NAMES = {
    "commonName": "CN", "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST",
    "organizationName": "O", "organizationalUnitName": "OU", "streetAddress": "street",
    "domainComponent": "DC", "userId": "UID", "surname": "SN", "givenName": "GN",
}
_DN_SPECIAL = re.compile(r'([,+"\\<>;])')


def _dn_value(value: str) -> str:
    out = _DN_SPECIAL.sub(r"\\\1", value)
    if out[:1] in ("#", " "):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out


def rfc2253(name: Any) -> str:
    """A getpeercert() subject or issuer as an RFC 2253 string ("CN=x,O=y"), last RDN first.

    Source: nginx docs: ngx_http_ssl_module, $ssl_client_s_dn (RFC 2253 since 1.11.6).
    """
    return ",".join(
        "+".join(f"{_DN_NAMES.get(k, k)}={_dn_value(v)}" for k, v in rdn) for rdn in reversed(name or ())
    )


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """A TLS connection's facts, for the ``$ssl_*`` variables and ``ssl_verify_client``.

    Attributes:
        protocol: "TLSv1.2", "TLSv1.3" ($ssl_protocol).
        cipher: OpenSSL's cipher name ($ssl_cipher).
        server_name: the SNI name, lower-cased, or "" ($ssl_server_name).
        session_reused: "r" when the session was resumed, else "." ($ssl_session_reused).
        client_verify: "SUCCESS" or "NONE" ($ssl_client_verify).
        client_s_dn, client_i_dn: the client certificate's subject and issuer, RFC 2253.
    """

    protocol: str
    cipher: str
    server_name: str
    session_reused: str
    client_verify: str
    client_s_dn: str
    client_i_dn: str

    @classmethod
    def of(cls, conn: ssl.SSLObject) -> TLSInfo:
        """Read the facts of a finished handshake.

        A client certificate is only there when it verified (a failing one
        ends the handshake), so its verdict is SUCCESS.
        """
        cipher = conn.cipher()
        peer = conn.getpeercert()
        return cls(
            protocol=conn.version() or "",
            cipher=cipher[0] if cipher else "",
            server_name=getattr(conn, "pyngx_server_name", ""),
            session_reused="r" if conn.session_reused else ".",
            client_verify="SUCCESS" if peer else "NONE",
            client_s_dn=rfc2253(peer.get("subject")) if peer else "",
            client_i_dn=rfc2253(peer.get("issuer")) if peer else "",
        )


# --- serving ------------------------------------------------------------------------


class ListenerConfig(HypercornConfig):
    """Hypercorn's settings for one of pyngx's own listeners: the shared ones, plus HTTP/2's.

    Args:
        base: server.py's shared settings (copied; graceful_timeout is read from it at stop).
        h2_prior_knowledge: accept the HTTP/2 preface on a plain connection.
    """

    def __init__(self, base: HypercornConfig, h2_prior_knowledge: bool) -> None:
        self.__dict__.update(base.__dict__)
        self.h2_prior_knowledge = h2_prior_knowledge
        self.h2_max_concurrent_streams = H2_MAX_STREAMS


class _WithTLS:
    """The app of one TLS connection: each request's scope carries the connection's TLSInfo."""

    __slots__ = ("app", "info")

    def __init__(self, app: AppWrapper, info: TLSInfo) -> None:
        self.app = app
        self.info = info

    async def __call__(self, scope: Any, receive: Any, send: Any, sync_spawn: Callable[..., Any],
                       call_soon: Callable[..., Any]) -> None:
        scope.setdefault("extensions", {})[SCOPE_KEY] = self.info
        await self.app(scope, receive, send, sync_spawn, call_soon)


def _handshake_failure(exc: BaseException) -> str:
    """nginx's error-log words for a handshake that failed with ``exc``."""
    if isinstance(exc, ssl.SSLError):
        return f"SSL_do_handshake() failed ({ssl_reason(exc)}) while SSL handshaking"
    if isinstance(exc, TimeoutError) or "taking longer" in str(exc):
        return "client timed out (110: Connection timed out) while SSL handshaking"
    return "peer closed connection in SSL handshake while SSL handshaking"


class Listener:
    """Serves one listen socket whose address has a ``ListenPlan``.

    Args:
        app: the ASGI app, wrapped for Hypercorn (server.py's ``self.asgi``).
        hc: server.py's shared Hypercorn settings (graceful_timeout changes at stop).
        plan: the plan of the current config.
    """

    def __init__(self, app: AppWrapper, hc: HypercornConfig, plan: ListenPlan) -> None:
        self.app = app
        self.hc = hc
        self.log = pyngx_log.get()
        self.update(plan)

    def update(self, plan: ListenPlan) -> None:
        """Use ``plan`` for connections accepted from now on."""
        self.plan = plan
        self.config = ListenerConfig(self.hc, plan.h2c)

    async def serve(self, sock: socket.socket, shutdown_trigger: Callable[[], Awaitable[Any]]) -> None:
        """Accept and serve until ``shutdown_trigger`` returns, then drain as Hypercorn does.

        On shutdown the socket is closed (new connections are refused), idle
        keep-alive connections close, and busy ones get the shared
        ``graceful_timeout`` to finish.
        """
        loop = asyncio.get_running_loop()
        state: dict[str, Any] = {}
        lifespan = Lifespan(self.app, self.hc, loop, state)
        lifespan_task = loop.create_task(lifespan.handle_lifespan())
        await lifespan.wait_for_startup()
        context = WorkerContext(None)
        connections: set[asyncio.Task[None]] = set()
        acceptor = loop.create_task(self._accept(sock, context, state, connections))
        try:
            await shutdown_trigger()
        finally:
            acceptor.cancel()
            await asyncio.gather(acceptor, return_exceptions=True)
            sock.close()
            await context.terminated.set()
            if connections:
                _, pending = await asyncio.wait(set(connections), timeout=self.hc.graceful_timeout)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            await lifespan.wait_for_shutdown()
            lifespan_task.cancel()
            await asyncio.gather(lifespan_task, return_exceptions=True)

    async def _accept(self, sock: socket.socket, context: WorkerContext, state: dict[str, Any],
                      connections: set[asyncio.Task[None]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, addr = await loop.sock_accept(sock)
            except OSError as exc:
                # EMFILE and friends: say so and retry, as nginx does (it pauses accepting).
                self.log.error("accept_failed", nginx_level="alert",
                               reason=f"accept() failed ({exc.errno}: {exc.strerror})", server=self.plan.address)
                await asyncio.sleep(0.5)
                continue
            task = loop.create_task(self._connection(conn, addr, context, state))
            connections.add(task)
            task.add_done_callback(connections.discard)

    async def _connection(self, conn: socket.socket, addr: Any, context: WorkerContext, state: dict[str, Any]) -> None:
        """One connection: the TLS handshake (if any) with the plan current now, then HTTP."""
        plan, config = self.plan, self.config
        loop = asyncio.get_running_loop()
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            # nginx: tcp_nodelay on. uvloop sets it; asyncio's connect_accepted_socket does not.
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = asyncio.StreamReader(limit=2**16, loop=loop)
        writers: list[asyncio.StreamWriter] = []
        protocol = asyncio.StreamReaderProtocol(reader, lambda r, w: writers.append(w), loop=loop)
        try:
            await loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=plan.context,
                ssl_handshake_timeout=self.hc.ssl_handshake_timeout if plan.context is not None else None,
            )
        except OSError as exc:  # ssl.SSLError, resets and the handshake timeout are all OSErrors
            client = addr[0] if isinstance(addr, tuple) else str(addr)
            self.log.info("ssl_handshake_failed", reason=_handshake_failure(exc), client=client, server=plan.address)
            if conn.fileno() != -1:
                conn.close()
            return
        if not writers:  # closed before connection_made
            return
        writer = writers[0]
        tls = writer.get_extra_info("ssl_object")
        app: AppWrapper = self.app if tls is None else _WithTLS(self.app, TLSInfo.of(tls))
        await TCPServer(app, loop, config, context, state, reader, writer)


# --- HTTP ---------------------------------------------------------------------------


async def _h2c_policy(self: H11Protocol, event: Any) -> None:
    """Hypercorn's HTTP/1.1 protocol switch, with nginx's rules.

    nginx never answers ``Upgrade: h2c`` (the request is served as
    HTTP/1.1), and takes the HTTP/2 preface (``PRI * HTTP/2.0``) on a plain
    connection only where HTTP/2 is on (``ListenerConfig.h2_prior_knowledge``).
    Hypercorn would do both everywhere.

    Source: nginx src/http/ngx_http_request.c, ngx_http_wait_request_handler
    (NGX_HTTP_V2_PREFACE).
    """
    if (getattr(self.config, "h2_prior_knowledge", False) and event.method == b"PRI" and event.target == b"*"
            and event.http_version == b"2.0"):
        raise H2ProtocolAssumedError(b"PRI * HTTP/2.0\r\n\r\n" + self.connection.trailing_data[0])


H11Protocol._check_protocol = _h2c_policy  # type: ignore[method-assign]


def _page(reason: str, tokens: bool) -> bytes:
    sign = server_header(tokens).decode()
    return (f"<html>\r\n<head><title>400 {reason}</title></head>\r\n<body>\r\n"
            f"<center><h1>400 Bad Request</h1></center>\r\n<center>{reason}</center>\r\n"
            f"<hr><center>{sign}</center>\r\n</body>\r\n</html>\r\n").encode()


def refusal(info: TLSInfo | None, srv: ServerConf) -> bytes | None:
    """nginx's 400 page when ``ssl_verify_client on`` got no client certificate, else None.

    Args:
        info: the request's connection facts (None: not TLS).
        srv: the server that takes the request.

    Source: nginx src/http/ngx_http_request.c, ngx_http_process_request
    (NGX_HTTPS_NO_CERT, 496); ngx_http_special_response.c (its page).
    """
    if info is None or srv.ssl.ssl_verify_client != "on" or info.client_verify == "SUCCESS":
        return None
    return _page("No required SSL certificate was sent", srv.conf.server_tokens)
