"""The typed, immutable configuration: what build.py produces.

Owns: frozen dataclasses ``Config`` (main context), ``HttpConf``,
``ServerConf``, ``LocationConf`` and their small value records.

Field names are the directives' names; where several directives fill one
field it is named for what it holds (``script``, ``access``).
Times are float seconds, sizes int bytes. A ``ServerConf``'s ``conf`` is the
server-level ``LocationConf`` (modifier "server") whose ``locations`` are
the server's top-level locations, as nginx keeps a server's loc_conf.

Must not: parse text, do I/O, or hold runtime state (peers, sessions).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from pyngx.config.values import Listen, ProxyPass, UpstreamServer
from pyngx.variables import Template

if TYPE_CHECKING:
    from pyngx.access import AccessRule, TrustedSource
    from pyngx.rewrite import Op
    from pyngx.special import ErrorPage


@dataclass(frozen=True, slots=True)
class AccessLog:
    """One ``access_log PATH [FORMAT]`` target.

    Attributes:
        path: file path, or "stderr" / "stdout" (also "/dev/stderr", "/dev/stdout").
        format: the log_format name ("combined" is built in).
        template: the compiled format.
        escape: how variable values are escaped: "default", "json" or "none".
    """

    path: str
    format: str
    template: Template
    escape: str = "default"


@dataclass(frozen=True, slots=True)
class Return:
    """``return code [text|URL]`` / ``return URL``.

    Attributes:
        code: status code; 444 closes the connection without a response.
        text: body text or redirect URL template, or None.
    """

    code: int
    text: Template | None


@dataclass(frozen=True, slots=True)
class AddHeader:
    """One ``add_header name value [always]`` (nginx: ngx_http_headers_module).

    Attributes:
        name: the field name as written.
        value: the value template; an empty value adds nothing.
        always: add to every response, not only 200, 201, 204, 206, 301, 302,
            303, 304, 307 and 308.
    """

    name: str
    value: Template
    always: bool


@dataclass(frozen=True, slots=True)
class RewriteRule:
    """One ``proxy_redirect`` / ``proxy_cookie_domain`` / ``proxy_cookie_path`` rule.

    Attributes:
        regex: the compiled pattern of a ``~`` / ``~*`` rule (the whole value
            is replaced on a match), or None.
        pattern: the text a value must start with (proxy_redirect,
            proxy_cookie_path) or equal (proxy_cookie_domain); None for regex rules.
        replacement: the replacement template ($1.. are the rule's captures).
    """

    regex: re.Pattern[str] | None
    pattern: Template | None
    replacement: Template


@dataclass(frozen=True, slots=True)
class DocRoot:
    """``root path`` or ``alias path``: where a location's files are. They
    share one slot, as in nginx: a nested location inherits either.

    Attributes:
        path: the path as written, variables compiled; a relative one is
            taken relative to the main config file's directory (pyngx.static).
        alias: set by ``alias``: the location's name in the URI is replaced
            by the path instead of being kept under it.
        strip: for ``alias`` in a prefix or exact location, the length of
            that location's name (the part of the URI the path replaces);
            -1 for ``alias`` in a regex location, whose path is the whole
            file name; 0 for ``root``.
    """

    path: Template
    alias: bool = False
    strip: int = 0


@dataclass(frozen=True, slots=True)
class TryFiles:
    """``try_files file ... uri | =code`` (nginx: ngx_http_core_module, try_files).

    Attributes:
        files: (name, directory) for each file to test, in order; a name
            written with a trailing "/" tests for a directory, and is kept
            without it, as nginx keeps it.
        last: the last argument: a URI (internal redirect) or "@name".
        code: the status of a last argument "=code", else None.
    """

    files: tuple[tuple[Template, bool], ...]
    last: Template
    code: int | None = None


#: The types nginx knows when no ``types`` block is configured anywhere
#: (ngx_http_core_module: ngx_http_core_default_types).
DEFAULT_TYPES: Mapping[str, str] = MappingProxyType({"html": "text/html", "gif": "image/gif", "jpg": "image/jpeg"})


@dataclass(frozen=True, slots=True)
class LocationConf:
    """A location (or the server level, modifier "server") with every
    inherited value resolved.

    Attributes:
        modifier: "" (prefix), "=", "^~", "~", "~*", "@" (named), or "server".
        name: the location's URI, regex source or @name ("" for server level).
        regex: compiled regex for "~" and "~*", else None.
        locations: nested locations, in file order.
        file, line: where the location block starts.
        proxy_pass: upstream URL, or None (nginx: ngx_http_proxy_module, proxy_pass).
        proxy_set_header: (field, value template) pairs, the innermost level's set.
        access_log: targets; empty means ``access_log off``.
        proxy_connect_timeout, proxy_read_timeout, proxy_send_timeout: seconds.
        proxy_http_version: "1.1" (pyngx default) or "1.0".
        default_type: Content-Type of ``return code text`` bodies.
        server_tokens: show the version in error pages and Server.
        proxy_next_upstream: conditions that pass a request to the next peer
            (error, timeout, invalid_header, http_5xx, ..., non_idempotent); empty for off.
        proxy_next_upstream_tries: at most this many tries (0: no limit).
        proxy_next_upstream_timeout: seconds for all tries (0: no limit).
    """

    modifier: str
    name: str
    regex: re.Pattern[str] | None
    locations: tuple[LocationConf, ...]
    file: str
    line: int
    proxy_pass: ProxyPass | None
    proxy_set_header: tuple[tuple[str, Template], ...]
    access_log: tuple[AccessLog, ...]
    proxy_connect_timeout: float
    proxy_read_timeout: float
    proxy_send_timeout: float
    proxy_http_version: str
    default_type: str
    server_tokens: bool
    proxy_next_upstream: frozenset[str]
    proxy_next_upstream_tries: int
    proxy_next_upstream_timeout: float
    # -- rewrite module fields (set, rewrite, if, break, error_page, map users) --
    #: this level's rewrite, return, set, break and if, in file order
    #: (pyngx.rewrite; never inherited: each level runs its own).
    script: tuple[Op, ...] = ()
    #: error_page entries, one per code, of the innermost level that has any.
    error_page: tuple[ErrorPage, ...] = ()
    recursive_error_pages: bool = False
    #: ``internal``: only internal redirects may reach this location (else 404).
    internal: bool = False
    rewrite_log: bool = False
    uninitialized_variable_warn: bool = True
    #: allow/deny rules in order (pyngx.access), of the innermost level that has any.
    access: tuple[AccessRule, ...] = ()
    #: realip: trusted sources, the field to read, skip trusted addresses.
    set_real_ip_from: tuple[TrustedSource, ...] = ()
    real_ip_header: str = "X-Real-IP"
    real_ip_recursive: bool = False
    # -- proxy header/body fields (add_header, proxy_hide_header, proxy_redirect, ...) --
    # Defaults here only keep field order free for the other sections;
    # build.py always passes every value (the table's defaults).
    #: add_header entries of the innermost level that has any.
    add_header: tuple[AddHeader, ...] = ()
    #: lower-cased response fields hidden from / let through to the client.
    proxy_hide_header: tuple[str, ...] = ()
    proxy_pass_header: tuple[str, ...] = ()
    #: None: ``proxy_redirect default`` (derived from location and proxy_pass);
    #: (): off; else the rules in order.
    proxy_redirect: tuple[RewriteRule, ...] | None = None
    #: Set-Cookie domain= / path= rewrite rules; () is off.
    proxy_cookie_domain: tuple[RewriteRule, ...] = ()
    proxy_cookie_path: tuple[RewriteRule, ...] = ()
    proxy_intercept_errors: bool = False
    #: lower-cased field names of proxy_ignore_headers.
    proxy_ignore_headers: frozenset[str] = frozenset()
    proxy_buffering: bool = True
    proxy_request_buffering: bool = True
    proxy_pass_request_headers: bool = True
    proxy_pass_request_body: bool = True
    proxy_set_body: Template | None = None
    proxy_method: Template | None = None
    proxy_ssl_verify: bool = False
    proxy_ssl_server_name: bool = False
    #: None: the host of $proxy_host.
    proxy_ssl_name: Template | None = None
    proxy_ssl_trusted_certificate: FileRef | None = None
    proxy_ssl_verify_depth: int = 1
    #: bytes; 0 disables the check.
    client_max_body_size: int = 1024 * 1024
    client_body_timeout: float = 60.0
    client_header_timeout: float = 60.0
    #: (timeout, header timeout or None), seconds.
    keepalive_timeout: tuple[float, float | None] = (75.0, None)
    # -- static file fields (root, alias, index, try_files, autoindex, types) --
    #: ``root`` / ``alias`` (nginx's default: root html).
    root: DocRoot = DocRoot(Template("html"))
    #: index file names in order; the last may be an absolute URI.
    index: tuple[Template, ...] = (Template("index.html"),)
    #: this level's try_files (never inherited, as in nginx), or None.
    try_files: TryFiles | None = None
    autoindex: bool = False
    autoindex_exact_size: bool = True
    #: "html", "xml", "json" or "jsonp".
    autoindex_format: str = "html"
    autoindex_localtime: bool = False
    #: lower-cased file extension -> MIME type, of the innermost level with ``types``.
    types: Mapping[str, str] = field(default_factory=lambda: DEFAULT_TYPES)
    etag: bool = True
    #: "off", "exact" or "before".
    if_modified_since: str = "exact"
    #: ranges a request may ask for (None: no limit; 0: ranges off).
    max_ranges: int | None = None
    log_not_found: bool = True
    #: accepted; pyngx reads files in a thread either way (see sendfile).
    sendfile: bool = False
    # -- ssl fields --

    @property
    def captures(self) -> frozenset[str]:
        """Names of the named captures of this location's regex."""
        return frozenset(self.regex.groupindex) if self.regex is not None else frozenset()

    def describe(self) -> str:
        """``location = /x`` style text for logs."""
        if self.modifier == "server":
            return "server"
        return f"location {self.modifier} {self.name}".replace("  ", " ")


@dataclass(frozen=True, slots=True)
class FileRef:
    """A file named by a directive, with where the directive is.

    Files are read after the build (certificates, keys), so their errors
    still name the directive's file and line.

    Attributes:
        path: the path as written; a relative one is taken relative to the
            main config file's directory.
        file, line: where the directive is.
    """

    path: str
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class SSLConf:
    """A server's ``ssl_*`` values, merged http -> server (nginx: ngx_http_ssl_module).

    Attributes:
        ssl_certificate, ssl_certificate_key: PEM files, paired in order.
        ssl_password_file: passphrases for encrypted keys, one a line, or None.
        ssl_protocols: protocol names ("TLSv1.2", "TLSv1.3", ...).
        ssl_ciphers: OpenSSL cipher list (TLSv1.2 and below).
        ssl_prefer_server_ciphers: the server's cipher order wins.
        ssl_session_cache: the words as written ("none", "builtin:1000", ...).
        ssl_session_timeout: seconds.
        ssl_client_certificate: CA certificates for client verification, or None.
        ssl_verify_client: "off", "on" or "optional".
    """

    ssl_certificate: tuple[FileRef, ...] = ()
    ssl_certificate_key: tuple[FileRef, ...] = ()
    ssl_password_file: FileRef | None = None
    ssl_protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    ssl_ciphers: str = "HIGH:!aNULL:!MD5"
    ssl_prefer_server_ciphers: bool = False
    ssl_session_cache: tuple[str, ...] = ("none",)
    ssl_session_timeout: float = 300.0
    ssl_client_certificate: FileRef | None = None
    ssl_verify_client: str = "off"


@dataclass(frozen=True, slots=True)
class ServerConf:
    """One ``server {}`` block.

    Attributes:
        listens: the listen directives (nginx's default ``*:80`` / ``*:8000``).
        server_names: names as written, lower-cased; "" matches a missing Host.
        conf: the server-level location conf (holds the location tree).
        file, line: where the server block starts.
        ssl: the server's TLS settings (used on ``listen ... ssl`` addresses).
        http2: ``http2 on`` (nginx: ngx_http_v2_module).
    """

    listens: tuple[Listen, ...]
    server_names: tuple[str, ...]
    conf: LocationConf
    file: str
    line: int
    ssl: SSLConf = field(default_factory=SSLConf)
    http2: bool = False


@dataclass(frozen=True, slots=True)
class UpstreamConf:
    """One ``upstream NAME {}`` block (nginx: ngx_http_upstream_module).

    Attributes:
        name: the upstream's name, as proxy_pass refers to it.
        servers: the server lines, in order.
        method: "round_robin" (default), "least_conn", "ip_hash", "hash" or "random".
        hash_key: the key template of ``hash``, else None.
        consistent: ``hash ... consistent`` (ketama ring).
        random_two: ``random two`` (the better of two by least connections).
        keepalive: the ``keepalive`` number, or None when not set.
        keepalive_timeout: seconds an idle upstream connection is kept.
        keepalive_requests: requests per upstream connection (documented, see man page).
        file, line: where the block starts.
    """

    name: str
    servers: tuple[UpstreamServer, ...]
    method: str
    hash_key: Template | None
    consistent: bool
    random_two: bool
    keepalive: int | None
    keepalive_timeout: float
    keepalive_requests: int
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class HttpConf:
    """The ``http {}`` block: its servers and upstreams, in file order."""

    servers: tuple[ServerConf, ...]
    upstreams: tuple[UpstreamConf, ...] = ()
    #: The http-level keepalive_timeout, seconds: Hypercorn's keep_alive_timeout.
    keepalive_timeout: float = 75.0


@dataclass(frozen=True, slots=True)
class ErrorLog:
    """``error_log FILE [LEVEL]``: path ("stderr" allowed) and level name."""

    path: str
    level: str


@dataclass(frozen=True, slots=True)
class Config:
    """A whole loaded configuration (the main context).

    Attributes:
        path: the main config file.
        files: every file read (main first), for reload watching.
        worker_processes: number of worker processes (``auto`` = CPU count).
        worker_connections: the events block's worker_connections.
        error_log: main-level error log.
        pid: pid file path, or None for none.
        daemon: detach from the terminal (pyngx default off).
        worker_shutdown_timeout: seconds a graceful stop waits, or None (no limit).
        http: the http block, or None when the file has none.
        warnings: nginx-style ``[warn]`` messages found while building.
        text: the effective config with includes expanded (``pyngx -T``).
        stamps: (file, mtime_ns, size) of every file when it was read, for reload.
    """

    path: Path
    files: tuple[Path, ...]
    worker_processes: int
    worker_connections: int
    error_log: ErrorLog
    pid: str | None
    daemon: bool
    http: HttpConf | None
    worker_shutdown_timeout: float | None = None
    warnings: tuple[str, ...] = field(default=())
    stamps: tuple[tuple[Path, int, int], ...] = field(default=())
    text: str = ""
