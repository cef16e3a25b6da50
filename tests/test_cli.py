"""The pyngx command line as a user runs it: -t, -v, start, stop, errors."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, pyngx_cmd, wait_for, wait_listening


class TestConfigTest:
    def test_ok_messages_and_exit_0(self, tmp_path):
        """pyngx -t on a valid file prints nginx's two lines and exits 0."""
        conf = tmp_path / "ok.conf"
        conf.write_text("http { server { listen 127.0.0.1:1; location / { return 200; } } }\n")
        out = pyngx_cmd("-t", "-c", str(conf))
        assert out.returncode == 0
        assert out.stderr.splitlines() == [
            f"pyngx: the configuration file {conf} syntax is ok",
            f"pyngx: configuration file {conf} test is successful",
        ]

    def test_quiet(self, tmp_path):
        """pyngx -t -q prints nothing for a valid file."""
        conf = tmp_path / "ok.conf"
        conf.write_text("http { }\n")
        out = pyngx_cmd("-t", "-q", "-c", str(conf))
        assert (out.returncode, out.stderr, out.stdout) == (0, "", "")

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("http {\n  server {\n    prox_pass x;\n  }\n}\n", 'unknown directive "prox_pass" in {f}:3'),
            ("http {\n  server {\n    listen 127.0.0.1:99999;\n  }\n}\n", 'invalid port in "127.0.0.1:99999" of the "listen" directive in {f}:3'),
            ("http {\n  server {\n", 'unexpected end of file, expecting "}" in {f}:3'),
            ("http {\n  server { location / { proxy_pass ftp://x; } }\n}\n", 'invalid URL prefix in {f}:2'),
            ("http {\n  gzip on;\n}\n", '"gzip" directive is not supported by pyngx in {f}:2'),
            ("events {\n  listen 80;\n}\n", '"listen" directive is not allowed here in {f}:2'),
        ],
    )
    def test_errors_are_one_emerg_line_and_exit_1(self, tmp_path, text, message):
        """A bad config gives one nginx-shaped [emerg] line, 'test failed', exit 1, no traceback."""
        conf = tmp_path / "bad.conf"
        conf.write_text(text)
        out = pyngx_cmd("-t", "-c", str(conf))
        assert out.returncode == 1
        lines = out.stderr.splitlines()
        assert lines[0] == "pyngx: [emerg] " + message.replace("{f}", str(conf))
        assert lines[-1] == f"pyngx: configuration file {conf} test failed"
        assert "Traceback" not in out.stderr

    def test_did_you_mean(self, tmp_path):
        """An unknown directive close to a known one gets a hint."""
        conf = tmp_path / "bad.conf"
        conf.write_text("http { server { location / { prox_pass http://x; } } }\n")
        out = pyngx_cmd("-t", "-c", str(conf))
        assert 'pyngx: did you mean "proxy_pass"?' in out.stderr.splitlines()

    def test_dump(self, tmp_path):
        """pyngx -T tests and prints the effective config with includes expanded."""
        (tmp_path / "inc.conf").write_text("server { listen 127.0.0.1:1; }\n")
        conf = tmp_path / "main.conf"
        conf.write_text("http {\n include inc.conf;\n}\n")
        out = pyngx_cmd("-T", "-c", str(conf))
        assert out.returncode == 0
        assert "listen 127.0.0.1:1;" in out.stdout

    def test_shipped_configs_pass(self):
        """conf/pyngx.conf and every conf/examples/*.conf pass pyngx -t."""
        for conf in [ROOT / "conf" / "pyngx.conf", *sorted((ROOT / "conf" / "examples").glob("*.conf"))]:
            out = pyngx_cmd("-t", "-c", str(conf))
            assert out.returncode == 0, (conf, out.stderr)

    def test_default_config_is_conf_pyngx_conf_under_prefix(self):
        """Without -c, pyngx -t uses ./conf/pyngx.conf of the current directory (the prefix)."""
        out = pyngx_cmd("-t", cwd=ROOT)
        assert out.returncode == 0
        assert "conf/pyngx.conf syntax is ok" in out.stderr

    def test_prefix_option(self, tmp_path):
        """-p PREFIX finds PREFIX/conf/pyngx.conf."""
        (tmp_path / "conf").mkdir()
        (tmp_path / "conf" / "pyngx.conf").write_text("http { }\n")
        out = pyngx_cmd("-t", "-p", str(tmp_path))
        assert out.returncode == 0, out.stderr
        assert str(tmp_path / "conf" / "pyngx.conf") in out.stderr

    def test_version(self):
        """pyngx -v prints the version like nginx -v."""
        out = pyngx_cmd("-v")
        assert out.returncode == 0
        assert out.stderr.startswith("pyngx version: pyngx/")


class TestServe:
    def test_bad_config_at_start_same_error(self, tmp_path):
        """Starting with a bad config prints the same [emerg] line as -t and exits 1."""
        conf = tmp_path / "bad.conf"
        conf.write_text("http {\n  server {\n    prox_pass x;\n  }\n}\n")
        out = pyngx_cmd("-c", str(conf))
        assert out.returncode == 1
        assert out.stderr.splitlines()[0] == f'pyngx: [emerg] unknown directive "prox_pass" in {conf}:3'

    def test_bind_failure(self, tmp_path):
        """A listen address already in use gives nginx's bind() message and exit 1."""
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        try:
            conf = tmp_path / "c.conf"
            conf.write_text(f"http {{ server {{ listen 127.0.0.1:{port}; }} }}\n")
            out = pyngx_cmd("-c", str(conf))
            assert out.returncode == 1
            assert f"pyngx: [emerg] bind() to 127.0.0.1:{port} failed (98: Address already in use)" in out.stderr
            assert "Traceback" not in out.stderr
        finally:
            busy.close()

    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
    def test_signal_stops_cleanly(self, run_pyngx, sig):
        """SIGTERM and SIGINT stop pyngx with exit 0 and no traceback; the pid file is removed."""
        port = free_port()
        p = run_pyngx(f"error_log stderr notice; pid pyngx.pid; http {{ server {{ listen 127.0.0.1:{port}; location / {{ return 200 ok; }} }} }}", port=port)
        wait_for(lambda: (p.workdir / "pyngx.pid").exists() and (p.workdir / "pyngx.pid").read_text().strip() != "")
        assert (p.workdir / "pyngx.pid").read_text().strip() == str(p.pid)
        assert p.stop(sig) == 0
        assert "Traceback" not in p.stderr
        assert "stopped" in p.stderr
        assert not (p.workdir / "pyngx.pid").exists()

    def test_shipped_default_config_serves(self, tmp_path):
        """conf/pyngx.conf serves its welcome page and /healthz (port substituted)."""
        port = free_port()
        text = (ROOT / "conf" / "pyngx.conf").read_text().replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        (tmp_path / "conf").mkdir()
        (tmp_path / "conf" / "pyngx.conf").write_text(text)
        proc = subprocess.Popen([sys.executable, "-m", "pyngx"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_listening("127.0.0.1", port, proc=proc)
            curl = shutil.which("curl")
            assert curl
            welcome = subprocess.run([curl, "-s", f"http://127.0.0.1:{port}/"], capture_output=True, timeout=10)
            assert welcome.stdout.startswith(b"Welcome to pyngx!")
            health = subprocess.run([curl, "-s", f"http://127.0.0.1:{port}/healthz"], capture_output=True, timeout=10)
            assert health.stdout == b"ok\n"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        assert proc.returncode == 0
        assert b"Traceback" not in proc.stderr.read()  # type: ignore[union-attr]


def test_module_entry_point():
    """python -m pyngx is the same program as the pyngx script."""
    script = Path(sys.executable).parent / "pyngx"
    if not script.exists():
        pytest.skip("pyngx script not installed next to this Python")
    out = subprocess.run([str(script), "-v"], capture_output=True, text=True, timeout=30)
    assert out.stderr.startswith("pyngx version:")
