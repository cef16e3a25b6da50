"""The typed, immutable configuration: what build.py produces.

Owns: frozen dataclasses ``Config`` (main context), ``HttpConf``,
``ServerConf``, ``LocationConf`` and their small value records.

Field names are the directives' names (``return`` is ``return_``).
Times are float seconds, sizes int bytes. A ``ServerConf``'s ``conf`` is the
server-level ``LocationConf`` (modifier "server") whose ``locations`` are
the server's top-level locations, as nginx keeps a server's loc_conf.

Must not: parse text, do I/O, or hold runtime state (peers, sessions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pyngx.config.values import Listen, ProxyPass, UpstreamServer
from pyngx.variables import Template


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
        return_: the rewrite module's return, or None.
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
    return_: Return | None
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
    # -- proxy header/body fields (add_header, proxy_hide_header, proxy_redirect, ...) --
    # -- static file fields (root, alias, index, try_files, autoindex, types) --
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
class ServerConf:
    """One ``server {}`` block.

    Attributes:
        listens: the listen directives (nginx's default ``*:80`` / ``*:8000``).
        server_names: names as written, lower-cased; "" matches a missing Host.
        conf: the server-level location conf (holds the location tree).
        file, line: where the server block starts.
    """

    listens: tuple[Listen, ...]
    server_names: tuple[str, ...]
    conf: LocationConf
    file: str
    line: int


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
