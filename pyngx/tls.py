"""TLS for clients, as nginx configures it: certificates, SNI, ALPN, mutual TLS.

Owns:

- loading ``ssl_certificate`` / ``ssl_certificate_key`` pairs (with
  ``ssl_password_file``) and ``ssl_client_certificate`` into SSLContexts
  with ``ssl_protocols``, ``ssl_ciphers`` and ``ssl_prefer_server_ciphers``,
  failing with nginx's messages and the directive's file:line, and warning
  about expired certificates (``check``, run by build.load, so ``pyngx -t``
  reports them);
- ``build``: a ``ListenPlan`` for each listen address that needs more than
  Hypercorn's plain HTTP/1.1: a TLS address (``listen ... ssl``) or a plain
  one with HTTP/2 (``listen ... http2`` or the default server's
  ``http2 on``). listener.py serves those addresses, and holds what
  happens per connection (``TLSInfo`` for the ``$ssl_*`` variables,
  nginx's 400 for ``ssl_verify_client on`` without a certificate).

How a TLS address works::

    accept (listener.py) -> plan = the listener's current ListenPlan
      -> handshake with plan.context, the dispatcher: versions, ciphers,
         options and client-certificate request of the default server
           SNI callback (also without SNI): server = server_name lookup as
           nginx does (routing.ServerGroup.find), else the default server;
           switch the connection to that server's SSLContext (its
           certificate, client CAs, ALPN "h2" + "http/1.1" where http2 is
           on, else "http/1.1")
      -> Hypercorn: ALPN "h2" -> HTTP/2, else HTTP/1.1

Reload: a new config gives new plans (the files are read again), which the
listeners take for the connections they accept from then on, so a rotated
certificate is served to new connections at once while open connections
keep theirs; the listen socket stays open.

Differs from nginx: OpenSSL takes protocol versions, options and the
client-certificate request from the context a handshake starts with (the
address's default server), as nginx's SNI switch does, but nginx also
copies the selected server's verify mode; pyngx asks every client of an
address for a certificate when any of its servers verifies clients. A
plain HTTP request on a TLS address fails the handshake and the
connection closes (nginx answers 400 "The plain HTTP request was sent to
HTTPS port"). See the ``ssl_*`` rows of the directive table for the rest.

Input: a ``Config``. Output: ``Plans``.
Must not: import asyncio or Hypercorn (build.load calls ``check``), accept
connections (listener.py), route or proxy requests.

Source: nginx docs: ngx_http_ssl_module, ngx_http_v2_module, "Configuring
HTTPS servers"; src/http/modules/ngx_http_ssl_module.c
(ngx_http_ssl_merge_srv_conf, ngx_http_ssl_init); src/http/ngx_http_request.c
(ngx_http_ssl_servername, ngx_http_process_request).
"""

from __future__ import annotations

import base64
import re
import ssl
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyngx.config.model import Config, FileRef, ServerConf, SSLConf
from pyngx.errors import ConfigError
from pyngx.routing import RouteTable, ServerGroup, parse_host

Address = tuple[str, int]

ALPN_H2 = ("h2", "http/1.1")
ALPN_H1 = ("http/1.1",)

# --- settings -----------------------------------------------------------------------

_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
_NO_VERSION = {"TLSv1": ssl.OP_NO_TLSv1, "TLSv1.1": ssl.OP_NO_TLSv1_1, "TLSv1.2": ssl.OP_NO_TLSv1_2,
               "TLSv1.3": ssl.OP_NO_TLSv1_3}
_ORDER = tuple(_VERSIONS)


def _apply(ctx: ssl.SSLContext, conf: SSLConf) -> None:
    """Give ``ctx`` the protocols, ciphers and cipher preference of ``conf``.

    SSLv2 and SSLv3 are accepted and ignored: OpenSSL 3 has neither. A gap
    in the list ("TLSv1 TLSv1.2") is closed with OP_NO_*, as nginx does.
    """
    wanted = [v for v in _ORDER if v in conf.ssl_protocols]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1 and TLSv1.1 are deprecated in Python
        if wanted:
            ctx.minimum_version = _VERSIONS[wanted[0]]
            ctx.maximum_version = _VERSIONS[wanted[-1]]
            for v in _ORDER[_ORDER.index(wanted[0]) : _ORDER.index(wanted[-1])]:
                if v not in wanted:
                    ctx.options |= _NO_VERSION[v]
        else:
            for flag in _NO_VERSION.values():
                ctx.options |= flag
    ctx.set_ciphers(conf.ssl_ciphers)
    if conf.ssl_prefer_server_ciphers:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE  # Python sets it; nginx's default is off


# --- certificates -------------------------------------------------------------------

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.S)


def _der_item(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER item at ``pos``."""
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(der[pos : pos + n], "big")
        pos += n
    if pos + length > len(der):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _der_time(der: bytes, item: tuple[int, int, int]) -> datetime:
    tag, start, end = item
    text = der[start:end].decode("ascii")
    if tag == 0x17:  # UTCTime, YYMMDDHHMMSSZ; RFC 5280 4.1.2.5.1: 50-99 are 19xx
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=timezone.utc)


def validity(pem: bytes) -> tuple[datetime, datetime] | None:
    """(notBefore, notAfter) of the first certificate in ``pem``, or None if unreadable.

    Walks the DER of RFC 5280 4.1: Certificate -> TBSCertificate ->
    [version], serialNumber, signature, issuer, validity.
    """
    m = _PEM_CERT.search(pem)
    if m is None:
        return None
    try:
        der = base64.b64decode(m.group(1))
        _, cert, _ = _der_item(der, 0)
        _, pos, _ = _der_item(der, cert)
        tag, _, end = _der_item(der, pos)
        if tag == 0xA0:  # [0] EXPLICIT version
            pos = end
        for _field in range(3):  # serialNumber, signature, issuer
            pos = _der_item(der, pos)[2]
        _, start, _ = _der_item(der, pos)
        not_before = _der_item(der, start)
        not_after = _der_item(der, not_before[2])
        return _der_time(der, not_before), _der_time(der, not_after)
    except (IndexError, ValueError):
        return None


class _Loader:
    """Makes the SSLContexts of one config; each file's faults are ConfigErrors at its directive.

    Args:
        base: the directory relative paths are taken from (the main config file's).
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self.warnings: list[str] = []
        self.contexts: dict[tuple[SSLConf, tuple[str, ...]], ssl.SSLContext] = {}
        self.dated: set[Path] = set()

    def path(self, ref: FileRef) -> Path:
        return self.base / ref.path

    def read(self, ref: FileRef, what: str) -> bytes:
        """The bytes of ``ref``.

        Raises:
            ConfigError: ``cannot load WHAT "PATH": BIO_new_file() failed (2: No such file or directory)``.
        """
        try:
            return self.path(ref).read_bytes()
        except OSError as exc:
            raise ConfigError(f'cannot load {what} "{ref.path}": BIO_new_file() failed ({exc.errno}: {exc.strerror})',
                              ref.file, ref.line) from None

    def passwords(self, ref: FileRef | None) -> list[bytes]:
        """The passphrases of ``ssl_password_file``, one a line (nginx: ngx_ssl_read_password_file).

        Raises:
            ConfigError: ``open() "PATH" failed (...)``, ``no passphrases to read from "PATH"``.
        """
        if ref is None:
            return []
        try:
            text = self.path(ref).read_bytes()
        except OSError as exc:
            raise ConfigError(f'open() "{ref.path}" failed ({exc.errno}: {exc.strerror})', ref.file, ref.line) from None
        found = [line.rstrip(b" \t\r") for line in text.split(b"\n")]
        found = [p for p in found if p]
        if not found:
            raise ConfigError(f'no passphrases to read from "{ref.path}"', ref.file, ref.line)
        return found

    def date_check(self, ref: FileRef, pem: bytes) -> None:
        """Warn, once per file, about a certificate that has expired or is not valid yet."""
        path = self.path(ref)
        if path in self.dated:
            return
        self.dated.add(path)
        dates = validity(pem)
        if dates is None:
            return
        now = datetime.now(timezone.utc)
        if dates[1] < now:
            self.warnings.append(f'certificate "{ref.path}" has expired (notAfter {dates[1]:%Y-%m-%d %H:%M:%S} GMT) '
                                 f"in {ref.file}:{ref.line}")
        elif dates[0] > now:
            self.warnings.append(f'certificate "{ref.path}" is not yet valid (notBefore {dates[0]:%Y-%m-%d %H:%M:%S} '
                                 f"GMT) in {ref.file}:{ref.line}")

    def pair(self, ctx: ssl.SSLContext, cert: FileRef, key: FileRef, passwords: list[bytes]) -> None:
        """Load one certificate (with its chain) and its key into ``ctx``.

        Raises:
            ConfigError: unreadable or not PEM, an encrypted key no passphrase
                opens, or ``SSL_CTX_use_PrivateKey("KEY") failed (SSL: key values mismatch)``.
        """
        cert_pem = self.read(cert, "certificate")
        if _PEM_CERT.search(cert_pem) is None:
            raise ConfigError(f'cannot load certificate "{cert.path}": PEM_read_bio_X509_AUX() failed '
                              "(SSL: no start line: no PEM certificate in the file)", cert.file, cert.line)
        self.date_check(cert, cert_pem)
        key_pem = self.read(key, "certificate key")
        if b"PRIVATE KEY-----" not in key_pem:
            raise ConfigError(f'cannot load certificate key "{key.path}": PEM_read_bio_PrivateKey() failed '
                              "(SSL: no start line: no PEM private key in the file)", key.file, key.line)
        encrypted = b"ENCRYPTED" in key_pem
        if encrypted and not passwords:
            raise ConfigError(f'cannot load certificate key "{key.path}": PEM_read_bio_PrivateKey() failed '
                              '(SSL: bad password read: the key is encrypted and no "ssl_password_file" is set)',
                              key.file, key.line)
        failure: ssl.SSLError | None = None
        for password in passwords if encrypted else [b""]:
            try:
                ctx.load_cert_chain(self.path(cert), self.path(key), password=password)
                return
            except ssl.SSLError as exc:
                if exc.reason == "KEY_VALUES_MISMATCH":
                    raise ConfigError(f'SSL_CTX_use_PrivateKey("{key.path}") failed (SSL: key values mismatch)',
                                      key.file, key.line) from None
                failure = exc
        if encrypted:
            raise ConfigError(f'cannot load certificate key "{key.path}": PEM_read_bio_PrivateKey() failed '
                              "(SSL: bad decrypt: no passphrase in the ssl_password_file opens it)", key.file, key.line)
        raise ConfigError(f'cannot load certificate "{cert.path}": {ssl_reason(failure)}', cert.file, cert.line)

    def context(self, srv: ServerConf, alpn: tuple[str, ...]) -> ssl.SSLContext:
        """The SSLContext of a server with certificates (one per distinct settings).

        Raises:
            ConfigError: as ``pair``; ``no "ssl_certificate_key" is defined for
                certificate "X"``; ``no ssl_client_certificate for ssl_verify_client``;
                an unreadable client CA file.
        """
        conf = srv.ssl
        found = self.contexts.get((conf, alpn))
        if found is not None:
            return found
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        _apply(ctx, conf)
        certs, keys = conf.ssl_certificate, conf.ssl_certificate_key
        if len(keys) < len(certs):
            cert = certs[len(keys)]
            raise ConfigError(f'no "ssl_certificate_key" is defined for certificate "{cert.path}"', cert.file, cert.line)
        passwords = self.passwords(conf.ssl_password_file)
        for cert, key in zip(certs, keys):
            self.pair(ctx, cert, key, passwords)
        ca = conf.ssl_client_certificate
        if conf.ssl_verify_client != "off" and ca is None:
            raise ConfigError("no ssl_client_certificate for ssl_verify_client", srv.file, srv.line)
        if ca is not None:
            self.read(ca, "client certificates")
            try:
                ctx.load_verify_locations(cafile=self.path(ca))
            except ssl.SSLError as exc:
                raise ConfigError(f'SSL_CTX_load_verify_locations("{ca.path}") failed ({ssl_reason(exc)})',
                                  ca.file, ca.line) from None
        if conf.ssl_verify_client != "off":
            # Never CERT_REQUIRED: a client without a certificate finishes the
            # handshake and gets nginx's 400 (listener.refusal).
            ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.set_alpn_protocols(list(alpn))
        self.contexts[(conf, alpn)] = ctx
        return ctx


def ssl_reason(exc: BaseException | None) -> str:
    """``SSL: key values mismatch`` from ``[X509: KEY_VALUES_MISMATCH] key values mismatch (_ssl.c:3926)``."""
    text = exc.args[1] if isinstance(exc, ssl.SSLError) and len(exc.args) > 1 else str(exc)
    text = re.sub(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$", "", str(text))
    return f"SSL: {text}"


# --- plans --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListenPlan:
    """What one listen address needs beyond plain HTTP/1.1, for one config.

    Attributes:
        address: the address as logged ("127.0.0.1:8443").
        context: the TLS dispatcher context (see module doc), or None for a
            plain address.
        h2c: HTTP/2 with prior knowledge is accepted (plain addresses only).
    """

    address: str
    context: ssl.SSLContext | None
    h2c: bool


@dataclass(frozen=True, slots=True)
class Plans:
    """The plans of one config, by listen address, and the warnings found making them."""

    plans: dict[Address, ListenPlan]
    warnings: tuple[str, ...]


def _dispatcher(group: ServerGroup, contexts: dict[int, ssl.SSLContext], verify: bool) -> ssl.SSLContext:
    """The context a handshake on one address starts with; its SNI callback switches it.

    Raises:
        ConfigError: the default server's settings fail (as ``_Loader.context``).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _apply(ctx, group.default.ssl)
    if verify:
        ctx.verify_mode = ssl.CERT_OPTIONAL
    fallback = contexts[id(group.default)]

    def servername(conn: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> int | None:
        # OpenSSL calls this for every ClientHello, with name None without SNI.
        srv = group.default
        if name:
            host = parse_host(name)
            if host is None:
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME  # nginx: invalid SNI is a fatal alert
            srv = group.find(host)[0]
            conn.pyngx_server_name = host  # type: ignore[attr-defined]
        conn.context = contexts.get(id(srv), fallback)  # a server without certificates keeps the default's
        return None

    ctx.sni_callback = servername
    return ctx


def _alpn(srv: ServerConf, h2_listen: bool) -> tuple[str, ...]:
    """ALPN offers: h2 where ``http2 on`` or ``listen ... http2`` (nginx: ngx_http_ssl_alpn_select)."""
    return ALPN_H2 if srv.http2 or h2_listen else ALPN_H1


def build(config: Config) -> Plans:
    """Load every certificate of ``config`` and plan each TLS or HTTP/2 address.

    Every server with ``ssl_certificate`` has its files loaded, on a TLS
    address or not, as nginx does.

    Returns:
        ``Plans``: a ``ListenPlan`` per address that needs one, and warnings
        (expired certificates) in nginx's ``[warn]`` shape.

    Raises:
        ConfigError: a certificate, key or CA file fault (at its directive),
            or ``no "ssl_certificate" is defined for the "listen ... ssl"
            directive`` (at the default server's block, as nginx).
    """
    loader = _Loader(config.path.parent)
    servers = config.http.servers if config.http is not None else ()
    for srv in servers:
        if srv.ssl.ssl_certificate:
            loader.context(srv, _alpn(srv, False))
    routes = RouteTable(config)
    plans: dict[Address, ListenPlan] = {}
    for addr, group in routes.groups.items():
        members = [(srv, lst) for srv in servers for lst in srv.listens if lst.address == addr]
        is_ssl = any(lst.ssl for _, lst in members)
        h2_listen = any(lst.http2 for _, lst in members)
        shown = str(members[0][1])
        if is_ssl:
            default = group.default
            if not default.ssl.ssl_certificate:
                raise ConfigError('no "ssl_certificate" is defined for the "listen ... ssl" directive',
                                  default.file, default.line)
            contexts = {id(srv): loader.context(srv, _alpn(srv, h2_listen)) for srv, _ in members
                        if srv.ssl.ssl_certificate}
            verify = any(srv.ssl.ssl_verify_client != "off" for srv, _ in members if srv.ssl.ssl_certificate)
            plans[addr] = ListenPlan(shown, _dispatcher(group, contexts, verify), False)
        elif h2_listen or group.default.http2:
            plans[addr] = ListenPlan(shown, None, True)
    return Plans(plans, tuple(loader.warnings))


def check(config: Config) -> tuple[str, ...]:
    """Load every certificate of ``config`` (see ``build``); returns the warnings.

    Raises:
        ConfigError: as ``build``.
    """
    return build(config).warnings
