"""Parsing the config in a short-lived child process: the daemon never loads lark.

Owns: ``read()``, which runs ``parse.read`` in a child interpreter and
takes its answer, a pickled ``Parsed`` or ``ConfigError``, from the child's
stdout; and ``main()``, the child's side.

Input: the main config file's path, the include prefix, the ``-g`` text.
Output: ``Parsed``, as ``parse.read`` gives it.

Why: lark, its LALR tables and the parse's own garbage would stay in the
daemon's resident memory for its whole life (about 2.1 MiB, measured with
Python 3.11: pymalloc keeps the arenas after the parser is dropped). The
child costs about 0.2 s of wall time per load; the daemon's reloads run
off the event loop (asyncio.to_thread), so serving goes on meanwhile.
``pyngx -t``, ``-T`` and ``-s`` parse in their own process (parse.read).

Must not: run anything in the child but ``parse.read``, let the child
import from anywhere this process would not (its working directory,
``PYTHON*`` variables), or let a bad answer escape as anything but
``ConfigError``.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

from pyngx.config.tree import Parsed
from pyngx.errors import ConfigError

#: The child's limit, seconds: parsing even a large config takes well under one.
TIMEOUT = 20.0

#: The package's parent directory: on the child's path (last) when this
#: process found pyngx without a path entry (an editable install's finder).
_ROOT = str(Path(__file__).resolve().parents[2])

#: What the child runs once its path is set: main(path, prefix, globals_).
_MAIN = "from pyngx.config.child import main; main"


def _child_code(path: str, prefix: str | None, globals_: str | None) -> str:
    """The ``-c`` program: this process's import path, then ``main`` with the arguments (as literals)."""
    paths = [p for p in sys.path if p]
    if _ROOT not in paths:
        paths.append(_ROOT)
    return f"import sys; sys.path[:] = {paths!r}; {_MAIN}({path!r}, {prefix!r}, {globals_!r})"


def read(
    path: str | os.PathLike[str], prefix: str | os.PathLike[str] | None = None, globals_: str | None = None
) -> Parsed:
    """``parse.read`` run in a child process.

    The child is this interpreter, isolated (``-I -S``: no ``PYTHON*``
    variables, no site, nothing from its working directory) and given this
    process's ``sys.path``, so it imports the same lark and pyngx as this
    process would. When no child can be started (no interpreter at
    ``sys.executable``, no process slot), the parse runs here instead: the
    config still loads, and lark stays loaded.

    Args:
        path: the main config file.
        prefix: directory for relative include paths (None: the file's directory).
        globals_: main-context directives given with ``-g``, or None.

    Returns:
        ``Parsed``, the same as ``parse.read(path, prefix, globals_)``.

    Raises:
        ConfigError: the config's own errors, as ``parse.read`` raises them;
            also when the child fails, is killed, outlives ``TIMEOUT``
            seconds or answers something unreadable (nothing of the config
            is known then).
    """
    if not sys.executable:
        return _in_process(path, prefix, globals_)
    file = os.fspath(path)
    code = _child_code(file, None if prefix is None else os.fspath(prefix), globals_)
    try:
        # A session of its own: a terminal's Ctrl-C or a signal to the
        # daemon's process group does not cut a reload's parse short.
        done = subprocess.run([sys.executable, "-I", "-S", "-c", code], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=TIMEOUT, check=False, start_new_session=True)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"the config parser did not finish in {TIMEOUT:g} s", file) from None
    except OSError:
        return _in_process(path, prefix, globals_)
    if done.returncode < 0:
        raise ConfigError(f"the config parser was killed by signal {-done.returncode}", file)
    if done.returncode != 0 or not done.stdout:
        lines = done.stderr.decode(errors="replace").strip().splitlines() or [f"exit status {done.returncode}"]
        raise ConfigError(f"the config parser failed: {lines[-1]}", file)
    try:
        answer = pickle.loads(done.stdout)
    except Exception as exc:  # a truncated answer, or one from another pyngx (upgraded since this one started)
        raise ConfigError(f"the config parser's answer is unreadable ({exc.__class__.__name__}: {exc}); "
                          "if pyngx was upgraded, restart it", file) from None
    if isinstance(answer, ConfigError):
        raise answer
    if not isinstance(answer, Parsed):
        raise ConfigError(f"the config parser answered {type(answer).__name__}", file)
    return answer


def _in_process(path: str | os.PathLike[str], prefix: str | os.PathLike[str] | None,
                globals_: str | None) -> Parsed:
    from pyngx.config.parse import read as parse_read

    return parse_read(path, prefix, globals_)


def main(path: str, prefix: str | None, globals_: str | None) -> None:
    """The child: ``parse.read(path, prefix, globals_)``, the pickled answer on stdout."""
    from pyngx.config.parse import read as parse_read

    answer: Parsed | ConfigError
    try:
        answer = parse_read(path, prefix, globals_)
    except ConfigError as err:
        answer = err
    sys.stdout.buffer.write(pickle.dumps(answer, pickle.HIGHEST_PROTOCOL))
