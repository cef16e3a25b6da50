"""The exception hierarchy of pyngx, split by who caused the fault.

::

    PyngxError
     +-- ConfigError        the operator's config file (printed as nginx's [emerg])
     |    +-- ConfigValueError  a directive's value; file and line filled in by build
     +-- StartError         serving could not start: a bind failed, the pid file is locked
     +-- UpstreamError      a peer failed: 502 Bad Gateway or 504 Gateway Time-out
     +-- InvalidProxyURL    a proxy_pass URL with variables came out invalid: 500
     +-- SpecialResponse    a status handed to error_page (proxy_intercept_errors)
     +-- ClientError        the client misbehaved: 400 Bad Request, 413, 499

Meant: no module outside this one defines an exception that crosses a
module boundary; everything else raises one of these. One exception to
mend: request.py's ``BadURI``, which app.py catches.
"""

from __future__ import annotations


class PyngxError(Exception):
    """Base class of every error pyngx raises on purpose."""


class ConfigError(PyngxError):
    """A fault in the configuration, located at a file and line.

    Args:
        message: nginx's wording for the fault, e.g. ``unknown directive "x"``.
        file: path of the config file as the user named it, or None.
        line: 1-based line number, or None when unknown.
        column: 1-based column, given for syntax errors only.
        hint: an extra sentence such as ``did you mean "proxy_pass"?``.

    ``str()`` gives nginx's format: ``MESSAGE in FILE:LINE``.
    Differs from nginx: syntax errors add ``:COLUMN`` after the line.

    Source: nginx src/core/ngx_conf_file.c, ngx_conf_log_error.
    """

    def __init__(
        self,
        message: str,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.hint = hint

    def __str__(self) -> str:
        if self.file is None:
            return self.message
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        if self.column is not None:
            where += f":{self.column}"
        return f"{self.message} in {where}"


class ConfigValueError(ConfigError):
    """An invalid directive value, raised by value parsers without a location.

    build.py catches it and re-raises a ConfigError carrying file and line.
    """


class StartError(PyngxError):
    """pyngx could not start serving (bind failed, pid file in use)."""


class UpstreamError(PyngxError):
    """An upstream peer failed; the client gets ``status`` (502 or 504).

    Args:
        status: 502 for refused/reset/invalid answers, 504 for timeouts.
        reason: the error-log text, nginx's wording, e.g.
            ``connect() failed (111: Connection refused) while connecting to upstream``.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class InvalidProxyURL(PyngxError):
    """A proxy_pass URL with variables evaluated to an invalid URL; the
    client gets 500, as from nginx (ngx_http_proxy_eval)."""


class SpecialResponse(PyngxError):
    """A handler ends the request with ``status`` and leaves the answer to
    ``error_page``, which the location has for that status (nginx:
    ngx_http_finalize_request(r, status) -> ngx_http_special_response_handler).

    proxy/http.py raises it before anything is sent, for its own 502/504
    and, with ``proxy_intercept_errors on``, for an upstream status >= 300;
    app.py catches it and runs the location's error_page.

    Args:
        status: the status error_page is looked up by.
        headers: fields the answer keeps (an intercepted 401 keeps the
            upstream's WWW-Authenticate, as nginx does).
        close: no answer at all: close the connection and log ``status``
            (nginx's ngx_http_terminate_request, e.g. 408 for client_body_timeout).
    """

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]] | None = None, close: bool = False) -> None:
        super().__init__(f"special response {status}")
        self.status = status
        self.headers = headers or []
        self.close = close


class ClientError(PyngxError):
    """The client sent something pyngx must refuse with ``status`` (400, 413, ...)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
