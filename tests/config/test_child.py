"""Tests for pyngx.config.child: the daemon's parse in a child process gives what parse.read gives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyngx.config import child, load
from pyngx.config.parse import read
from pyngx.errors import ConfigError


def _error(fn, *args):  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        fn(*args)
    err = info.value
    return (str(err), err.file, err.line, err.column)


def test_same_tree_with_includes_and_globals(tmp_path: Path) -> None:
    """Directives, their files and lines, the files read (includes) and -g's directives come back whole."""
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "a.conf").write_text('location /a { return 200 "a b\\tc"; }\n')
    conf = tmp_path / "pyngx.conf"
    conf.write_text("events {}\nhttp {\n  server {\n    listen 127.0.0.1:1;\n    include inc/*.conf;\n  }\n}\n")
    here = read(conf, None, "worker_processes 1;")
    there = child.read(conf, None, "worker_processes 1;")
    assert there == here
    assert [p.name for p in there.files] == ["pyngx.conf", "a.conf"]
    assert there.directives[-1].file == "command line"


@pytest.mark.parametrize("text", [
    "http { server { listen 1 }",  # end of file inside a block
    'events {}\nhttp { "a"b; }\n',  # no separator after a quote: line and column
    "include missing.conf;\n",  # missing include file
])
def test_same_error(tmp_path: Path, text: str) -> None:
    """A config error comes back as the ConfigError parse.read raises: message, file, line, column."""
    conf = tmp_path / "pyngx.conf"
    conf.write_text(text)
    assert _error(child.read, conf, None, None) == _error(read, conf, None, None)


def test_load_isolated_builds_the_same_config(tmp_path: Path) -> None:
    """load(isolated=True) gives the Config that load() gives."""
    conf = tmp_path / "pyngx.conf"
    conf.write_text("events {}\nhttp { server { listen 127.0.0.1:1; location / { proxy_pass http://127.0.0.1:2; } } }\n")
    assert load(conf, isolated=True) == load(conf)


def test_a_failing_child_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A child that dies without an answer is a ConfigError naming its last words, not a traceback."""
    conf = tmp_path / "pyngx.conf"
    conf.write_text("events {}\n")
    monkeypatch.setattr(child, "_CODE", "import sys; sys.exit('parser out of memory')")
    assert _error(child.read, conf, None, None) == (
        f"the config parser failed: parser out of memory in {conf}", str(conf), None, None)


def test_child_imports_pyngx_from_anywhere(tmp_path: Path) -> None:
    """The child finds pyngx from any working directory and with no PYTHONPATH of the caller's."""
    conf = tmp_path / "pyngx.conf"
    conf.write_text("events {}\n")
    code = "import sys; from pyngx.config import child; print(len(child.read(sys.argv[1]).directives))"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code, str(conf)], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=60)
    assert (out.returncode, out.stdout.strip()) == (0, "1"), out.stderr


def test_no_child_parses_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When no child process can start (no interpreter there), the config is parsed in this process."""
    conf = tmp_path / "pyngx.conf"
    conf.write_text("events {}\n")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    assert child.read(conf) == read(conf)
