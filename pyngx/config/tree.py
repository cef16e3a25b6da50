"""What parsing gives: ``Directive`` nodes in a ``Parsed`` tree.

Owns: the node types that build.py reads and ``Directive.dump()`` (back to
nginx syntax, for ``pyngx -T``).

Must not: import lark. The daemon keeps these for its whole life; the
parser that makes them (parse.py) runs in a short-lived child process
(child.py) and never loads into the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


# A word with one of these characters is written double-quoted by dump();
# a backslash is escaped so that "\\n" is not read back as a newline.
_NEEDS_QUOTES = frozenset(" \t\r\n;{}\"'#\\")


def _quote(word: str) -> str:
    if word and not _NEEDS_QUOTES.intersection(word):
        return word
    escaped = word.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


@dataclass(frozen=True, slots=True)
class Directive:
    """One directive as written: ``name args... ;`` or ``name args... { block }``.

    Attributes:
        name: the first word.
        args: the remaining words, quotes removed and escapes applied.
        block: the inner directives for a block directive, else None.
        file: the config file it came from, as given to ``parse``.
        line: 1-based line of the ";" or "{" that ends the directive's
            words: the line nginx names in its messages (cf->conf_file->line
            when the directive's handler runs).
    """

    name: str
    args: tuple[str, ...]
    block: tuple[Directive, ...] | None
    file: str
    line: int

    def dump(self, indent: int = 0) -> str:
        """Render the directive back to nginx syntax (used by ``pyngx -T``).

        Parsing the result gives the same names, args and blocks.
        """
        pad = "    " * indent
        words = " ".join(_quote(w) for w in (self.name, *self.args))
        if self.block is None:
            return f"{pad}{words};\n"
        inner = "".join(d.dump(indent + 1) for d in self.block)
        return f"{pad}{words} {{\n{inner}{pad}}}\n"


@dataclass(frozen=True, slots=True)
class Parsed:
    """The result of parsing a main config file.

    Attributes:
        directives: the top-level (main context) directives.
        files: every file read, the main file first, in reading order.
    """

    directives: tuple[Directive, ...]
    files: tuple[Path, ...]
