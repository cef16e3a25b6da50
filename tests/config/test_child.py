"""Tests for pyngx.config.child: the daemon's parse in a child process gives what parse.read gives."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pyngx.config import child, load
from pyngx.config.parse import read
from pyngx.errors import ConfigError


def _error(fn: Callable[..., object], *args: object) -> tuple[str, str | None, int | None, int | None]:
    """What ``fn(*args)``'s ConfigError says: message, file, line, column."""
    with pytest.raises(ConfigError) as info:
        fn(*args)
    err = info.value
    return (str(err), err.file, err.line, err.column)


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "pyngx.conf"
    path.write_text("events {}\n")
    return path


class TestSameAnswer:
    def test_same_tree_with_includes_and_globals(self, tmp_path: Path) -> None:
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

    def test_prefix_is_passed_as_given(self, tmp_path: Path) -> None:
        """Includes resolve against the prefix given, as in this process."""
        (tmp_path / "conf").mkdir()
        (tmp_path / "inc.conf").write_text("worker_processes 2;\n")
        conf = tmp_path / "conf" / "pyngx.conf"
        conf.write_text("include inc.conf;\n")
        assert child.read(conf, tmp_path) == read(conf, tmp_path)

    @pytest.mark.parametrize("text", [
        "http { server { listen 1 }",  # end of file inside a block
        'events {}\nhttp { "a"b; }\n',  # no separator after a quote: line and column
        "include missing.conf;\n",  # missing include file
    ])
    def test_same_error(self, tmp_path: Path, text: str) -> None:
        """A config error comes back as the ConfigError parse.read raises: message, file, line, column."""
        conf = tmp_path / "pyngx.conf"
        conf.write_text(text)
        assert _error(child.read, conf, None, None) == _error(read, conf, None, None)

    def test_load_isolated_builds_the_same_config(self, tmp_path: Path) -> None:
        """load(isolated=True) gives the Config that load() gives."""
        conf = tmp_path / "pyngx.conf"
        conf.write_text("events {}\nhttp { server { listen 127.0.0.1:1; location / { proxy_pass http://127.0.0.1:2; } } }\n")
        assert load(conf, isolated=True) == load(conf)


class TestWhereTheChildImportsFrom:
    def test_not_from_the_working_directory(self, conf: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
        """A pyngx package in the daemon's working directory is not what the child imports."""
        fake = tmp_path / "cwd" / "pyngx"
        fake.mkdir(parents=True)
        (fake / "__init__.py").write_text("raise SystemExit('imported from the working directory')\n")
        monkeypatch.chdir(fake.parent)
        monkeypatch.setenv("PYTHONPATH", str(fake.parent))
        assert child.read(conf) == read(conf)

    def test_from_any_directory_without_pythonpath(self, conf: Path, tmp_path: Path) -> None:
        """The child finds pyngx from any working directory and with no PYTHONPATH of the caller's."""
        code = "import sys; from pyngx.config import child; print(len(child.read(sys.argv[1]).directives))"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        out = subprocess.run([sys.executable, "-c", code, str(conf)], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=60)
        assert (out.returncode, out.stdout.strip()) == (0, "1"), out.stderr


class TestFailures:
    """Whatever goes wrong with the child is a ConfigError naming it, never a traceback."""

    @pytest.mark.parametrize(("main", "said"), [
        ("import sys; (lambda *a: sys.exit('parser out of memory'))", "the config parser failed: parser out of memory"),
        ("(lambda *a: None)", "the config parser failed: exit status 0"),
        ("import os, signal; (lambda *a: os.kill(os.getpid(), signal.SIGKILL))",
         "the config parser was killed by signal 9"),
        ("import sys, pickle; (lambda *a: sys.stdout.buffer.write(pickle.dumps(42)))",
         "the config parser answered int"),
        ("import sys; (lambda *a: sys.stdout.write('garbage'))", "the config parser's answer is unreadable"),
    ])
    def test_bad_child(self, conf: Path, monkeypatch: pytest.MonkeyPatch, main: str, said: str) -> None:
        monkeypatch.setattr(child, "_MAIN", main)
        message, *where = _error(child.read, conf, None, None)
        assert message.startswith(said) and message.endswith(f" in {conf}")
        assert where == [str(conf), None, None]

    def test_slow_child(self, conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(child, "_MAIN", "import time; (lambda *a: time.sleep(30))")
        monkeypatch.setattr(child, "TIMEOUT", 0.5)
        assert _error(child.read, conf, None, None)[0] == f"the config parser did not finish in 0.5 s in {conf}"

    @pytest.mark.parametrize("executable", ["no-python", ""])
    def test_no_child_parses_here(self, conf: Path, monkeypatch: pytest.MonkeyPatch, executable: str) -> None:
        """When no child process can start (no interpreter there, or none known), the config is parsed here."""
        monkeypatch.setattr(sys, "executable", str(conf.parent / executable) if executable else "")
        assert child.read(conf) == read(conf)
