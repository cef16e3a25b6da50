"""Parsing the config in a short-lived child process: the daemon never loads lark.

Owns: ``read()``, which runs ``parse.read`` in ``python -S -c`` and takes
its answer, a pickled ``Parsed`` or ``ConfigError``, from the child's
stdout; and ``main()``, the child's side.

Why: lark, its LALR tables and the parse's own garbage would stay in the
daemon's resident memory for its whole life (about 2.4 MiB, measured with
Python 3.11: pymalloc keeps the arenas after the parser is dropped). The
child costs about 0.2 s of wall time per load; the daemon's reloads run
off the event loop (asyncio.to_thread), so serving goes on meanwhile.
``pyngx -t`` and ``-T`` parse in their own process (parse.read).

Must not: run anything in the child but ``parse.read``, or unpickle
anything but that child's answer.
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
TIMEOUT = 60.0

#: The package's parent directory, first on the child's path: pyngx imports
#: there however this process found it (installed, editable, or -m from a checkout).
_ROOT = str(Path(__file__).resolve().parents[2])

_CODE = "from pyngx.config.child import main; main()"


def read(
    path: str | os.PathLike[str], prefix: str | os.PathLike[str] | None = None, globals_: str | None = None
) -> Parsed:
    """``parse.read`` run in a child process; same arguments, result and errors.

    The child is this interpreter with ``-S`` and this process's ``sys.path``
    (site's work is done already), so it imports the same lark and pyngx.
    When no child can be started (no interpreter at ``sys.executable``, no
    process slot), the parse runs here instead: the config still loads, and
    lark stays loaded.

    Raises:
        ConfigError: the config's own errors, as ``parse.read`` raises them;
            also when the child fails or outlives ``TIMEOUT`` (nothing of
            the config is known then).
    """
    argv = [sys.executable, "-S", "-c", _CODE, os.fspath(path), os.fspath(prefix or ""), globals_ or ""]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([_ROOT, *(p for p in sys.path if p)]))
    try:
        done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"the config parser did not finish in {TIMEOUT:g} s", os.fspath(path)) from None
    except OSError:
        from pyngx.config.parse import read as parse_read

        return parse_read(path, prefix, globals_)
    if done.returncode != 0 or not done.stdout:
        lines = done.stderr.decode(errors="replace").strip().splitlines() or [f"exit status {done.returncode}"]
        raise ConfigError(f"the config parser failed: {lines[-1]}", os.fspath(path))
    answer = pickle.loads(done.stdout)
    if isinstance(answer, ConfigError):
        raise answer
    if not isinstance(answer, Parsed):
        raise ConfigError(f"the config parser answered {type(answer).__name__}", os.fspath(path))
    return answer


def main() -> None:
    """The child: ``parse.read(path, prefix, globals)`` from argv, the pickled answer on stdout."""
    from pyngx.config.parse import read as parse_read

    path, prefix, globals_ = sys.argv[1:4]
    answer: Parsed | ConfigError
    try:
        answer = parse_read(path, prefix or None, globals_ or None)
    except ConfigError as err:
        answer = err
    sys.stdout.buffer.write(pickle.dumps(answer, pickle.HIGHEST_PROTOCOL))
