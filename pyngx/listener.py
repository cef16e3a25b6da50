"""Serving the listen addresses that pyngx.tls plans: TLS and HTTP/2 (h2c).

Owns:

- ``Listener``: pyngx's accept loop for every listen address: the TLS
  handshake (if any) with the plan current at accept (``update`` swaps
  plans on reload), its failures logged at info with the client's address
  as nginx words them, then ``Connection`` (Hypercorn's ``TCPServer``)
  speaks HTTP/1.1 or HTTP/2 (by ALPN, or the preface on h2c); graceful
  stop as Hypercorn's ``worker_serve``;
- ``Connection``: Hypercorn's ``TCPServer`` with a keep-alive timer that
  is one timer handle instead of two tasks per request, a response's head
  written together with its body (one ``send()``), and no reference cycle
  left when it ends;
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
from hypercorn.asyncio.worker_context import AsyncioSingleTask, WorkerContext
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol.h11 import H2ProtocolAssumedError, H11Protocol
from hypercorn.typing import AppWrapper, TaskGroup

from pyngx import log as pyngx_log
from pyngx.config.model import ServerConf
from pyngx.responses import server_header
from pyngx.stream import ChunkReader
from pyngx.tls import ListenPlan, ssl_reason

#: The key of the ASGI scope's "extensions" that holds a connection's ``TLSInfo``.
SCOPE_KEY = "pyngx.tls"
#: nginx's http2_max_concurrent_streams default.
H2_MAX_STREAMS = 128
#: A connection's writes wait for the socket to take them (asyncio's drain)
#: only while this much is still buffered: asyncio's default low-water mark
#: (16 KiB), below which its drain returns at once anyway.
DRAIN_BYTES = 16 * 1024
#: A connection's reads ask for up to this many bytes: at least the largest
#: chunk the event loop delivers from a plain socket (uvloop 256,000 bytes,
#: asyncio 256 KiB), so that ``ChunkReader`` hands each on whole (a TLS
#: layer may deliver more at once; the rest then comes with the next read).
#: A request body goes to the app in pieces of up to this size, and
#: Hypercorn's app queue holds 10 of them while the upstream is slower than
#: the client: up to ~2.5 MiB per connection (with 64 KiB reads, 640 KiB).
READ_BYTES = 2**18


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


class _IdleTimer(AsyncioSingleTask):
    """Hypercorn's keep-alive timer (``TCPServer.idle_task``) as one
    ``call_later`` handle: Hypercorn's cancels one task and starts two
    (its own and ``asyncio.wait_for``'s) on every request.

    Restarted when the connection waits for a request (the first, or the
    next one on a keep-alive connection), stopped when one arrives. When it
    fires, or at once when the listener stops, the connection closes as
    Hypercorn's ``TCPServer._idle_timeout`` closes it.
    """

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn
        self.timer: asyncio.TimerHandle | None = None
        self.closer: asyncio.Task[None] | None = None

    async def restart(self, task_group: TaskGroup, action: Callable[..., Any]) -> None:
        self.cancel()
        conn = self.conn
        if conn.context.terminated.is_set():
            self.fire()
            return
        self.timer = conn.loop.call_later(conn.config.keep_alive_timeout, self.fire)
        conn.idle.add(self)

    async def stop(self) -> None:
        self.cancel()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.conn.idle.discard(self)

    def fire(self) -> None:
        """Close the idle connection (the keep-alive timeout passed, or the listener stops)."""
        self.cancel()
        if self.closer is None:
            self.closer = self.conn.loop.create_task(self.conn._initiate_server_close())


class Connection(TCPServer):
    """One client connection: Hypercorn's ``TCPServer`` with changes that
    save CPU or memory on every request and change nothing the client sees.

    - The keep-alive timer is ``_IdleTimer`` (keep_alive_timeout seconds, as before).
    - Reads are not wrapped in ``asyncio.wait_for`` when there is no read_timeout.
    - When the connection ends it parts from Hypercorn's protocol and its
      idle timer, so that reference counting frees it at once.
    - A response's head waits for the write that follows it (its body, or
      the end of the response), and both leave in one ``writelines``: a
      small response costs one ``send()`` instead of two. A head that is
      not followed in the same event-loop iteration (a 100 Continue, a
      slow first body chunk) leaves at the iteration's end. Every other
      write goes out at once, as Hypercorn's; it is drained (the sender
      waits) only while the socket's buffer holds ``DRAIN_BYTES`` or more,
      below which Hypercorn's drain returns at once anyway.

    Args:
        idle: the listener's set of idle connections' timers (closed at stop).
        (the others as Hypercorn's ``TCPServer``)
    """

    def __init__(self, app: AppWrapper, loop: asyncio.AbstractEventLoop, config: HypercornConfig,
                 context: WorkerContext, state: dict[str, Any], reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, idle: set[_IdleTimer]) -> None:
        super().__init__(app, loop, config, context, state, reader, writer)
        self.idle = idle
        self.idle_task = _IdleTimer(self)
        self.pending: list[bytes] = []
        self.flushing: asyncio.Handle | None = None

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            # Hypercorn's protocol sends through this object and the idle
            # timer closes it: part them, so that a closed connection (its
            # buffers, h11 state, transport) is freed at once instead of
            # waiting for the cyclic garbage collector.
            del self.idle_task  # stopped by Hypercorn's _close()
            if hasattr(self, "protocol"):
                del self.protocol
                del self._task_group

    async def _initiate_server_close(self) -> None:
        # The idle timer's closer can run after the connection ended on its
        # own (the client closed as the timer fired): nothing left to close.
        if hasattr(self, "protocol"):
            await super()._initiate_server_close()

    async def protocol_send(self, event: Event) -> None:
        if not isinstance(event, RawData):
            await super().protocol_send(event)
            return
        data = event.data
        try:
            if self.pending:
                if data:
                    self.pending.append(data)
                self.flush()
            elif data.startswith(b"HTTP/1."):  # an HTTP/1.x response head (h11)
                self.pending.append(data)
                self.flushing = self.loop.call_soon(self._flush_soon)
                return
            elif data:
                self.writer.write(data)
            if self.writer.transport.get_write_buffer_size() >= DRAIN_BYTES:
                async with self.send_lock:
                    await self.writer.drain()
        except (ConnectionError, RuntimeError):
            await self.protocol.handle(Closed())

    async def _read_data(self) -> None:
        # Hypercorn's loop, with one coroutine less per read when there is no
        # read_timeout (pyngx sets none): asyncio.wait_for(read, None); reads of
        # READ_BYTES (ChunkReader) rather than its 64 KiB.
        if self.config.read_timeout is not None:
            await super()._read_data()
            return
        reader, handle = self.reader, self.protocol.handle
        while not reader.at_eof():
            try:
                data = await reader.read(READ_BYTES)
            except (ConnectionError, OSError, TimeoutError, ssl.SSLError):
                break
            await handle(RawData(data))
        await handle(Closed())

    def flush(self) -> None:
        """Write what waits to be written.

        Raises:
            ConnectionError, RuntimeError: the connection is closed.
        """
        if self.flushing is not None:
            self.flushing.cancel()
            self.flushing = None
        if self.pending:
            pending, self.pending = self.pending, []
            self.writer.writelines(pending)

    def _flush_soon(self) -> None:
        self.flushing = None
        with contextlib.suppress(ConnectionError, RuntimeError):
            self.flush()  # a closed connection: the reader sees it and closes the streams

    async def _close(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            self.flush()
        await super()._close()


def _handshake_failure(exc: BaseException) -> str:
    """nginx's error-log words for a handshake that failed with ``exc``."""
    if isinstance(exc, ssl.SSLError):
        return f"SSL_do_handshake() failed ({ssl_reason(exc)}) while SSL handshaking"
    if isinstance(exc, TimeoutError) or "taking longer" in str(exc):
        return "client timed out (110: Connection timed out) while SSL handshaking"
    return "peer closed connection in SSL handshake while SSL handshaking"


class Listener:
    """Serves one listen socket with its address's ``ListenPlan``.

    Args:
        app: the app as Hypercorn calls it (server.py's ``self.asgi``: pyngx's App).
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
        idle: set[_IdleTimer] = set()
        acceptor = loop.create_task(self._accept(sock, context, state, connections, idle))
        try:
            await shutdown_trigger()
        finally:
            acceptor.cancel()
            await asyncio.gather(acceptor, return_exceptions=True)
            sock.close()
            await context.terminated.set()
            for timer in list(idle):
                timer.fire()
            if connections:
                _, pending = await asyncio.wait(set(connections), timeout=self.hc.graceful_timeout)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            await lifespan.wait_for_shutdown()
            lifespan_task.cancel()
            await asyncio.gather(lifespan_task, return_exceptions=True)

    async def _accept(self, sock: socket.socket, context: WorkerContext, state: dict[str, Any],
                      connections: set[asyncio.Task[None]], idle: set[_IdleTimer]) -> None:
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
            task = loop.create_task(self._connection(conn, addr, context, state, idle))
            connections.add(task)
            task.add_done_callback(connections.discard)

    async def _connection(self, conn: socket.socket, addr: Any, context: WorkerContext, state: dict[str, Any],
                          idle: set[_IdleTimer]) -> None:
        """One connection: the TLS handshake (if any) with the plan current now, then HTTP."""
        plan, config = self.plan, self.config
        loop = asyncio.get_running_loop()
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            # nginx: tcp_nodelay on. uvloop sets it; asyncio's connect_accepted_socket does not.
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # asyncio's StreamReader's part, without its two copies of every byte.
        reader = ChunkReader(loop)
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
        writer = writers.pop()  # the list is the callback's: emptied, it holds no cycle
        tls = writer.get_extra_info("ssl_object")
        app: AppWrapper = self.app if tls is None else _WithTLS(self.app, TLSInfo.of(tls))
        await Connection(app, loop, config, context, state, reader, writer, idle)


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
