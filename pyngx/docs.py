"""man/pyngx.conf.5, generated from the tables so it cannot drift from them.

Owns: turning ``DIRECTIVES``, ``NGINX_DIRECTIVES``, ``VARIABLES`` and
``PREFIX_VARIABLES`` into a roff page (man(7) macros), plus the prose
that describes the configuration language around them.

Input: the tables (data). Output: the page as text (``render_conf5``);
``python -m pyngx.docs`` writes it to man/pyngx.conf.5.
Must not: parse or build configs, or change the tables; every fact about
a directive belongs in its ``DirectiveSpec``, not here.

Source: nginx docs (each directive's Syntax/Default/Context block);
man-pages(7) and man(7) for the layout.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

from pyngx import __version__
from pyngx.config.directives import DIRECTIVES, NGINX_DIRECTIVES, DirectiveSpec
from pyngx.config.parse import MAX_INCLUDE_DEPTH
from pyngx.variables import PREFIX_VARIABLES, VARIABLES

#: The page's date in .TH; bump it when a release changes the page.
DATE = "2026-11-21"

#: Where ``main()`` writes the page, relative to the repository root.
CONF5 = Path(__file__).resolve().parent.parent / "man" / "pyngx.conf.5"

#: Context names in nesting order, for the Context: line. An ``if`` block
#: in a server and one in a location read "if" together, as in nginx's docs.
_CONTEXT_ORDER = ("main", "events", "http", "server", "location", "if in server", "if in location")


def _contexts(spec: DirectiveSpec) -> str:
    """nginx's Context: line, e.g. "server, location, if" or "location, if in location"."""
    names = [c for c in _CONTEXT_ORDER if c in spec.contexts]
    if "if in server" in names and "if in location" in names:
        names = [c for c in names if not c.startswith("if in ")] + ["if"]
    return ", ".join(names)

#: Directives in NGINX_DIRECTIVES that never reach the table check:
#: parse.py expands ``include`` before build.py looks at names.
_PARSER_DIRECTIVES = frozenset({"include"})

#: What each prefix variable's suffix names (nginx: "Embedded Variables").
_PREFIX_DOCS = {
    "http_": "a request header field; the field name lowercased, with dashes written as underscores "
    "(\\fB$http_user_agent\\fR)",
    "arg_": "an argument in the request line's query string (\\fB$arg_page\\fR)",
    "cookie_": "a cookie sent by the client (\\fB$cookie_session\\fR)",
}


def _esc(text: str, code: bool = False) -> str:
    """Escape text for a roff text line.

    Args:
        text: plain text, possibly non-ASCII.
        code: a literal (syntax, option, file name): "-" becomes ``\\-`` so
            it renders as a minus that can be copied and searched for.
    """
    out = text.replace("\\", "\\e")
    if code:
        out = out.replace("-", "\\-")
    out = "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in out)
    return _guard(out)


def _guard(line: str) -> str:
    """A text line that starts with "." or "'" would be read as a request."""
    return "\\&" + line if line[:1] in (".", "'") else line


def _syntax(spec: DirectiveSpec) -> str:
    """The syntax line with the directive's name in bold, as nginx's docs show it."""
    text = _esc(spec.syntax, code=True)
    return re.sub(rf"(?<![\w$]){re.escape(spec.name)}(?!\w)", rf"\\fB{spec.name}\\fR", text)


def _default(spec: DirectiveSpec) -> str:
    """nginx's Default: line; "a; b;" becomes one line per value."""
    if spec.default_doc in ("", "—", "none"):
        return "\\(em"
    values = [v.strip() for v in spec.default_doc.split(";") if v.strip()]
    return "\n.br\n".join(f"\\fB{spec.name}\\fR {_esc(v, code=True)};" for v in values)


def _url(spec: DirectiveSpec) -> str:
    """nginx's documentation page for the directive."""
    path = spec.source if spec.source == "ngx_core_module" else f"http/{spec.source}"
    return f"https://nginx.org/en/docs/{path}.html#{spec.name}"


def _directive(spec: DirectiveSpec) -> list[str]:
    contexts = _contexts(spec)
    lines = [
        f".SS {spec.name}",
        ".PD 0",
        ".TP 10",
        "Syntax:",
        _syntax(spec),
        ".TP",
        "Default:",
        _default(spec),
        ".TP",
        "Context:",
        contexts,
        ".TP",
        "Module:",
        spec.source,
        ".br",
        # Break points (\\:) let the URL wrap on a narrow terminal; .na stops
        # the wrapped line from being stretched to the margin.
        ".na",
        "https://" + _url(spec).removeprefix("https://").replace("/", "/\\:").replace("#", "\\:#"),
        ".ad",
        ".PD",
    ]
    if spec.differs:
        lines += [".PP", *_wrap(f"\\fIDiffers from nginx:\\fR {_esc(spec.differs)}")]
    return lines


def _wrap(roff: str) -> list[str]:
    """Text lines of at most 80 bytes (mandoc's style limit), broken at spaces."""
    return [_guard(line) for line in textwrap.wrap(roff, 76, break_long_words=False, break_on_hyphens=False)]


_HEAD = r"""
.TH PYNGX.CONF 5 @DATE@ "pyngx @VERSION@" "File Formats Manual"
.\" Directive and variable names must not be hyphenated.
.nh
.SH NAME
pyngx.conf \- configuration file for the pyngx reverse proxy
.SH SYNOPSIS
.I PREFIX\fB/conf/pyngx.conf
.br
.B /etc/pyngx/pyngx.conf
.SH DESCRIPTION
.B pyngx
reads nginx's configuration language.
A directive that pyngx supports takes the same arguments and behaves as
nginx's directive of the same name, except where its entry under
.B DIRECTIVES
says
.IR "Differs from nginx" .
See
.BR pyngx (8)
for how the file is found.
.PP
The whole file is read, checked and compiled when pyngx starts;
.B pyngx \-t
does the same without serving.
Every error names the file and line, in nginx's words, for example
.RS 4
.nf
pyngx: [emerg] "proxy_pass" directive is not allowed here in /etc/pyngx/pyngx.conf:14
.fi
.RE
.SS Directives
A
.I simple directive
is a name and its arguments, separated by whitespace and ended by
.BR ; :
.RS 4
.nf
proxy_read_timeout 30s;
.fi
.RE
.PP
A
.I block directive
has the same shape but ends with a block of further directives in braces
instead of
.BR ; :
.RS 4
.nf
server {
    listen 8080;
}
.fi
.RE
.PP
Whitespace, including newlines, only separates words.
.SS Comments
A
.B #
at the start of a word begins a comment that runs to the end of the line.
Inside a quoted string, or inside a word, it is an ordinary character.
.SS Quoting and escapes
A word is bare, \(aqsingle\-quoted\(aq or "double\-quoted".
Quotes let a word contain whitespace,
.BR ; ,
.BR { ,
.B }
or
.BR # ;
they are removed from the argument.
In every word, bare or quoted, the escapes
.BR \e" ,
.BR \e\(aq ,
.BR \e\e ,
.BR \et ,
.B \er
and
.B \en
stand for a double quote, single quote, backslash, tab, carriage return
and newline.
Any other backslash is kept as written, so the regular expression in
\fBlocation \(ti \(ha/item/(\ed+)$\fR
needs no doubling.
A bare word ends at the first
.B {
or
.B }
that is not part of
\fB${\fIname\fB}\fR,
so a regular expression with braces must be quoted.
.SS Variables
Where a directive accepts variables, a
\fB$\fIname\fR
or
\fB${\fIname\fB}\fR
in an argument is replaced by the variable's value for each request.
The braces separate the name from text that follows it, as in
.BR ${host}_log .
Names are case\-insensitive.
.B $1
to
.B $9
are the numbered captures of the regular expression in the enclosing
.B location
(one digit only:
.B $10
is
.B $1
followed by
.BR 0 ),
and a named capture
\fB(?<\fIname\fB>...)\&\fR
or
\fB(?P<\fIname\fB>...)\&\fR
is available as
\fB$\fIname\fR.
.PP
.I Differs from nginx:
regular expressions are compiled by Python's
.B re
module, not PCRE2; common syntax (classes, anchors, groups, named groups,
lookarounds) is the same.
.PP
Variables are compiled when the configuration is loaded: an unknown name
fails with
.BR "unknown \(dqname\(dq variable" .
In pyngx, variables are expanded in the values of
.B proxy_set_header
and in the text or URL of
.BR return ,
and the access log uses nginx's
.B combined
format; in other arguments a
.B $
is an ordinary character, and
.B proxy_pass
rejects variables.
The variables are listed under
.BR VARIABLES .
.SS include
.RS 4
.nf
\fBinclude\fR \fIfile\fR | \fImask\fR;
.fi
.RE
.PP
Replaces itself with the directives of another file, in any context.
A relative path is taken relative to the directory of the main
configuration file.
A
.I mask
with glob characters
.RB ( * ,
.BR ? ,
.BR [...] )
includes every matching file in sorted order; a mask that matches
nothing is not an error, but a missing plain file is.
Includes may nest @DEPTH@ levels deep.
.SS Contexts
Each directive is allowed only in the contexts listed in its
.B Context:
line; anywhere else it fails with
.BR "\(dqNAME\(dq directive is not allowed here" .
.TP 10
.B main
The top level of the file.
.TP
.B events
The
.B events
block, in main.
.TP
.B http
The
.B http
block, in main.
.TP
.B server
A
.B server
block, in http: one virtual server.
.TP
.B location
A
.B location
block, in server or in another location.
.PP
A directive set in http or server and not set again in an inner server
or location is inherited by it, as in nginx.
.SH DIRECTIVES
"""

_VARIABLES = r"""
.SH VARIABLES
Each variable below has nginx's meaning; a value that is unset is the
empty string, written as
.B \-
in access\-log lines.
.B $nginx_version
gives the pyngx version.
.PP
@NAMES@
.PP
Variables formed from a prefix and a name:
"""

_TAIL = r"""
.SH NOT SUPPORTED
These nginx directives are recognised but not supported in this release.
A configuration that uses one of them fails
.B pyngx \-t
and does not start:
.RS 4
.nf
pyngx: [emerg] "NAME" directive is not supported by pyngx in FILE:LINE
.fi
.RE
.PP
@NAMES@
.PP
Any other name fails with
.BR "unknown directive \(dqNAME\(dq" ,
with a suggestion when it is close to a supported name.
.SH FILES
.TP
.I /etc/pyngx/pyngx.conf
The configuration file used when
.B \-c
is not given and
.I PREFIX\fB/conf/pyngx.conf
does not exist.
.SH EXAMPLES
Proxy one site to an application on port 8000:
.RS 4
.nf
http {
    server {
        listen 80;
        server_name example.com;
        location / {
            proxy_pass http://127.0.0.1:8000;
            proxy_set_header Host $host;
            proxy_set_header X\-Forwarded\-For $proxy_add_x_forwarded_for;
        }
    }
}
.fi
.RE
.SH SEE ALSO
.BR pyngx (8),
.BR nginx (8)
.PP
nginx documentation: https://nginx.org/en/docs/
"""


def _filled(words: list[str]) -> str:
    """Words in bold, comma-separated, one per line for readable diffs, not justified."""
    last = len(words) - 1
    items = [f"\\fB{_esc(w, code=True)}\\fR{'.' if i == last else ','}" for i, w in enumerate(words)]
    return "\n".join([".na", *items, ".ad"])


def _fill(template: str, **values: object) -> str:
    """Replace ``@KEY@`` placeholders (roff is full of braces, so no str.format)."""
    text = template.strip("\n")
    for key, value in values.items():
        text = text.replace(f"@{key.upper()}@", str(value))
    return text


def render_conf5() -> str:
    """Render man/pyngx.conf.5.

    Returns:
        The page as roff text (man(7) macros), ending in a newline.
    """
    lines = [
        '.\\" Generated by "python -m pyngx.docs" from pyngx/config/directives.py; do not edit.',
        _fill(_HEAD, date=DATE, version=__version__, depth=MAX_INCLUDE_DEPTH),
    ]
    for name in sorted(DIRECTIVES):
        lines += _directive(DIRECTIVES[name])
    lines.append(_fill(_VARIABLES, names=_filled([f"${v}" for v in sorted(VARIABLES)])))
    for prefix in sorted(PREFIX_VARIABLES):
        doc = _PREFIX_DOCS.get(prefix, "see nginx's documentation")
        lines += [".TP", f"\\fB${_esc(prefix)}\\fIname\\fR", *_wrap(doc)]
    lines.append(_fill(_TAIL, names=_filled(sorted(NGINX_DIRECTIVES - _PARSER_DIRECTIVES))))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the page: ``python -m pyngx.docs [PATH]`` (default man/pyngx.conf.5).

    Returns:
        The exit status (0).
    """
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else CONF5
    path.write_text(render_conf5(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
