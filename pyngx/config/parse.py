"""Config text -> a tree of ``Directive`` nodes, with ``include`` expanded.

Owns: the Lark grammar, turning Lark's errors into nginx's wording, quote
and escape handling, and ``include`` (globs, relative to the directory of
the main config file, as nginx resolves them against its conf prefix;
``include mime.types`` reads pyngx's copy of nginx's file, ``MIME_TYPES``,
when that directory has none).

Input: a path. Output: ``Parsed(directives, files)``.
Must not: know any directive name other than ``include``, check contexts
or arity of anything else (build.py owns meaning).

Source: nginx src/core/ngx_conf_file.c (ngx_conf_read_token, ngx_conf_include).
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

from pyngx.config.tree import Directive, Parsed
from pyngx.errors import ConfigError
from pyngx.memory import hidden

__all__ = ["MAX_INCLUDE_DEPTH", "MIME_TYPES", "Directive", "Parsed", "parse", "parse_string", "read"]

# lark imports the third-party ``regex`` package whenever it is installed
# (lark/utils.py, lark/lark.py) but uses it only for Lark(regex=True) and
# for \p{...} classes, neither of which grammar.lark has. Loading it would
# cost about 1.4 MiB of resident memory for the daemon's whole life.
with hidden("regex"):
    from lark import Lark, Token, Tree
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

GRAMMAR = Path(__file__).with_name("grammar.lark")

#: nginx's mime.types, shipped with pyngx: ``include mime.types;`` reads it
#: when the main config file's directory has no mime.types of its own.
MIME_TYPES = Path(__file__).with_name("mime.types")

#: include may nest this deep; deeper means a loop of includes.
MAX_INCLUDE_DEPTH = 32

# nginx turns these escapes into characters in every word; any other
# backslash stays, so regexes like "\d" survive. (ngx_conf_read_token)
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "t": "\t", "r": "\r", "n": "\n"}


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(GRAMMAR.read_text(), parser="lalr", propagate_positions=True, maybe_placeholders=False)


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPES:
            out.append(_ESCAPES[text[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _word(tok: Token) -> str:
    text = str(tok)
    if tok.type in ("DQUOTED", "SQUOTED"):
        text = text[1:-1]
    return _unescape(text)


def parse(path: str | os.PathLike[str], prefix: str | os.PathLike[str] | None = None) -> Parsed:
    """Parse the main config file at ``path``, expanding includes.

    Args:
        path: the main config file. Error messages show it as given.
        prefix: directory that relative include paths resolve against;
            defaults to the directory of ``path`` (nginx's conf prefix).

    Returns:
        ``Parsed`` with the main-context directives and all files read.

    Raises:
        ConfigError: unreadable file, syntax error (with line and column),
            unexpected end of file, missing include file, include loop.
    """
    state = _State(Path(prefix) if prefix is not None else Path(path).parent)
    directives = state.parse_file(str(path), depth=0)
    return Parsed(directives, tuple(state.files))


def parse_string(text: str, file: str = "<string>") -> tuple[Directive, ...]:
    """Parse config text without includes being resolvable beyond the cwd.

    Args:
        text: nginx-syntax configuration text.
        file: the name used in error messages.

    Returns:
        The top-level directives.

    Raises:
        ConfigError: as ``parse``.
    """
    return _State(Path.cwd()).parse_text(text, file, depth=0)


def read(
    path: str | os.PathLike[str], prefix: str | os.PathLike[str] | None = None, globals_: str | None = None
) -> Parsed:
    """Parse the main config file, then the ``-g`` directives after its own.

    What ``load`` parses, in this process; ``child.read`` runs it in a child.

    Args:
        path: the main config file.
        prefix: directory for relative include paths (default: the file's directory).
        globals_: main-context directives given with ``-g``, or None.

    Raises:
        ConfigError: as ``parse``; the ``-g`` text's errors name "command line".
    """
    parsed = parse(path, prefix)
    if globals_:
        extra = parse_string(globals_, file="command line")
        parsed = Parsed(parsed.directives + extra, parsed.files)
    return parsed


class _State:
    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.files: list[Path] = []

    def parse_file(self, file: str, depth: int, where: tuple[str, int] | None = None) -> tuple[Directive, ...]:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            err = f'open() "{os.path.abspath(file)}" failed ({exc.errno}: {exc.strerror})'
            raise ConfigError(err, *(where or (None, None))) from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"invalid UTF-8 in configuration file ({exc.reason})", file) from None
        self.files.append(Path(file).resolve())
        return self.parse_text(text, file, depth)

    def parse_text(self, text: str, file: str, depth: int) -> tuple[Directive, ...]:
        try:
            tree = _parser().parse(text)
        except UnexpectedInput as exc:
            raise _syntax_error(exc, text, file) from None
        return self._items(tree.children, file, depth)

    def _items(self, children: list[Tree[Token] | Token], file: str, depth: int) -> tuple[Directive, ...]:
        out: list[Directive] = []
        for node in children:
            if not isinstance(node, Tree):
                continue
            tokens = [w.children[0] for w in node.children if isinstance(w, Tree) and w.data == "word"]
            end = next(t for t in node.children if isinstance(t, Token) and t.type in ("SEMICOLON", "LBRACE"))
            name, *rest = (_word(t) for t in tokens if isinstance(t, Token))
            args = tuple(rest)
            line = end.line or 0
            if name == "include":
                if node.data == "block":
                    # nginx: ngx_conf_handler, include has no block.
                    raise ConfigError('directive "include" is not terminated by ";"', file, line)
                out.extend(self._include(args, file, line, depth))
            elif node.data == "block":
                inner = [c for c in node.children if isinstance(c, Tree) and c.data in ("simple", "block")]
                out.append(Directive(name, args, self._items(list(inner), file, depth), file, line))
            else:
                out.append(Directive(name, args, None, file, line))
        return tuple(out)

    def _include(self, args: tuple[str, ...], file: str, line: int, depth: int) -> list[Directive]:
        # nginx: ngx_core_module, include (any context).
        if len(args) != 1:
            raise ConfigError('invalid number of arguments in "include" directive', file, line)
        if depth >= MAX_INCLUDE_DEPTH:
            raise ConfigError(f'include nesting too deep (more than {MAX_INCLUDE_DEPTH} levels)', file, line)
        import glob  # here, not at the top: only include uses it, so a daemon without includes never loads it

        pattern = args[0]
        full = pattern if os.path.isabs(pattern) else str(self.prefix / pattern)
        if glob.has_magic(full):
            # A glob that matches nothing is no error, as in nginx.
            names = sorted(glob.glob(full))
        else:
            names = [full]
            if pattern == MIME_TYPES.name and not os.path.exists(full):
                # pyngx ships nginx's mime.types: "include mime.types;" needs no nginx.
                names = [str(MIME_TYPES)]
        out: list[Directive] = []
        for name in names:
            if os.path.isdir(name) and glob.has_magic(full):
                continue
            out.extend(self.parse_file(name, depth + 1, where=(file, line)))
        return out


# A complete quoted word; the grammar also requires a separator after it.
_QUOTED = {'"': re.compile(r'"(?:[^"\\]|\\[\s\S])*"'), "'": re.compile(r"'(?:[^'\\]|\\[\s\S])*'")}

_EOF_WORDS = 'unexpected end of file, expecting ";" or "}"'
_EOF_BLOCK = 'unexpected end of file, expecting "}"'


def _syntax_error(exc: UnexpectedInput, text: str, file: str) -> ConfigError:
    """Translate a Lark error into nginx's wording (ngx_conf_read_token).

    nginx's messages, by what stopped the reader:

    - end of file with words pending or inside a quote:
      ``unexpected end of file, expecting ";" or "}"``;
    - end of file inside a block: ``unexpected end of file, expecting "}"``;
    - ";" or "{" with no words, "}" after words or outside any block,
      anything but a separator after a closing quote: ``unexpected "X"``.

    End-of-file errors name the line after the last newline, as nginx counts
    lines. Differs from nginx: other syntax errors add ":COLUMN".
    """
    eof_line = text.count("\n") + 1
    if isinstance(exc, UnexpectedEOF) or isinstance(exc, UnexpectedToken) and exc.token.type == "$END":
        expected = set(getattr(exc, "expected", ()) or ())
        msg = _EOF_WORDS if expected & {"SEMICOLON", "LBRACE"} else _EOF_BLOCK
        return ConfigError(msg, file, eof_line)
    if isinstance(exc, UnexpectedToken):
        return ConfigError(f'unexpected "{exc.token}"', file, exc.token.line, exc.token.column)
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream if exc.pos_in_stream is not None else len(text)
        quote = _QUOTED.get(text[pos]) if pos < len(text) else None
        m = quote.match(text, pos) if quote is not None else None
        if m is not None and m.end() < len(text):
            # A closing quote followed by something other than a separator.
            after = m.end()
            line = text.count("\n", 0, after) + 1
            return ConfigError(f'unexpected "{text[after]}"', file, line, after - text.rfind("\n", 0, after))
        # An unterminated quote, or a backslash at the very end.
        return ConfigError(_EOF_WORDS, file, eof_line)
    return ConfigError(str(exc).splitlines()[0], file, getattr(exc, "line", None))
