"""What ends a pass of the request phases, and ``error_page``.

Owns: the outcomes a phase, a script or a content handler ends with:
``Finish`` (a status nginx answers itself, its "special response", which
``error_page`` may take over), ``Respond`` (``return code text``) and
``Redirect`` (an internal redirect to a URI or a named location, made with
``internal_redirect``); and ``ErrorPage``, one status of an ``error_page``
directive, with its parser.

Input: directive arguments at load time. Output: frozen values app.py acts on.
Must not: send anything or run phases (app.py and flow.py do).

Source: nginx src/http/ngx_http_special_response.c
(ngx_http_special_response_handler, ngx_http_send_error_page);
src/http/ngx_http_core_module.c (ngx_http_core_error_page,
ngx_http_internal_redirect, ngx_http_named_location).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from pyngx.errors import ConfigValueError
from pyngx.request import Request
from pyngx.variables import Template

#: Statuses whose ``return`` text is a Location (nginx: ngx_http_send_response).
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class Finish:
    """End the request with a status nginx answers itself (its "special
    response": an error page, or a redirect page with Location), which
    ``error_page`` may take over. 444 closes the connection unanswered.

    Attributes:
        status: the status.
        location: the Location field of a redirect, or None.
        headers: more fields the answer keeps (an intercepted upstream 401's
            WWW-Authenticate), as (name, value) bytes.
    """

    status: int
    location: str | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Respond:
    """``return code [text]`` for a code that is not an error page or a
    redirect: answer ``status`` with ``body`` (Content-Type: default_type)."""

    status: int
    body: str


@dataclass(frozen=True, slots=True)
class Redirect:
    """An internal redirect: to ``uri`` with ``args`` (nginx:
    ngx_http_internal_redirect), or, when ``uri`` starts with "@", to that
    named location (ngx_http_named_location).

    The phases start again: at server rewrite for a URI, at location
    rewrite in the named location for "@name".
    """

    uri: str
    args: str = ""

    @classmethod
    def to(cls, target: str) -> Redirect:
        """The redirect for a target as written: "/uri?args", "/uri" or "@name"."""
        if target.startswith("@"):
            return cls(target)
        uri, _, args = target.partition("?")
        return cls(uri, args)


#: What ends a phase early (None: go on to the next phase).
Outcome = Union[Finish, Respond, Redirect]


def internal_redirect(target: str) -> Redirect:
    """The outcome that redirects a request internally, for a handler to return.

    Args:
        target: "/uri" or "/uri?args" (the phases run again from server
            rewrite with that URI and those args; the client's args are
            dropped, as nginx does), or "@name" (the named location's
            rewrite phase runs next, with the URI unchanged).

    Source: nginx src/http/ngx_http_core_module.c, ngx_http_internal_redirect,
    ngx_http_named_location (used by error_page and try_files).
    """
    return Redirect.to(target)


@dataclass(frozen=True, slots=True)
class ErrorPage:
    """One status of an ``error_page`` directive.

    Attributes:
        code: the status it takes over.
        overwrite: -1: the answer keeps ``code``; 0 ("="): the status of
            whatever the redirect answers; else the new status ("=200").
        uri: the target: "/uri", "@name" or a URL (may hold variables).
        args: the arguments of a constant "/uri?args" target, else None.
    """

    code: int
    overwrite: int
    uri: Template
    args: str | None

    @property
    def codes(self) -> frozenset[int]:
        """{code}, for readers that take entries covering several codes."""
        return frozenset((self.code,))

    def target(self, r: Request) -> Redirect | str:
        """The internal redirect for "/uri" and "@name", else the URL to redirect the client to."""
        uri = self.uri.render(r)
        if uri.startswith("/"):
            # nginx: a target with variables is split at "?" when used; the
            # request's own arguments never carry over.
            return Redirect.to(uri) if self.uri.constant is None else Redirect(uri, self.args or "")
        if uri.startswith("@"):
            return Redirect(uri)
        return uri


# nginx turns these into 400 when no "=" is given (ngx_http_core_error_page).
_TO_400 = frozenset({494, 495, 496, 497})


def parse_error_page(args: tuple[str, ...], captures: frozenset[str] = frozenset()) -> tuple[ErrorPage, ...]:
    """``error_page code ... [=[response]] uri``.

    Raises:
        ConfigValueError: ``invalid value "X"``, ``value "X" must be between
            300 and 599``; an unknown variable in the URI.

    Source: nginx src/http/ngx_http_core_module.c, ngx_http_core_error_page.
    """
    i = len(args) - 2
    if args[i].startswith("="):
        if i == 0:
            raise ConfigValueError(f'invalid value "{args[i]}"')
        rest = args[i][1:]
        if rest and not rest.isdigit():
            raise ConfigValueError(f'invalid value "{args[i]}"')
        overwrite, n = (int(rest) if rest else 0), 2
    else:
        overwrite, n = -1, 1
    text = args[-1]
    uri = Template(text, captures)
    target_args: str | None = None
    if uri.constant is not None and text.startswith("/") and "?" in text:
        path, _, target_args = text.partition("?")
        uri = Template(path)
    pages = []
    for word in args[: len(args) - n]:
        if not word.isdigit() or word == "499":
            raise ConfigValueError(f'invalid value "{word}"')
        code = int(word)
        if not 300 <= code <= 599:
            raise ConfigValueError(f'value "{word}" must be between 300 and 599')
        pages.append(ErrorPage(code, 400 if overwrite == -1 and code in _TO_400 else overwrite, uri, target_args))
    return tuple(pages)
