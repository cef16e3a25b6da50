"""The daemon's process model: signals, pid file, notify socket, workers, logs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port, pyngx_cmd, start_backend, wait_for, wait_listening


def get(port: int, path: str = "/") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class TestNotify:
    def test_notify_messages_in_order(self, tmp_path):
        """READY=1 after listening, RELOADING=1 (with MONOTONIC_USEC) then READY=1 on reload, STOPPING=1 on stop."""
        sock_path = tmp_path / "notify.sock"
        rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        rx.bind(str(sock_path))
        rx.settimeout(10)
        port = free_port()
        conf = tmp_path / "c.conf"
        conf.write_text(f"http {{ server {{ listen 127.0.0.1:{port}; location / {{ return 200 ok; }} }} }}")
        env = dict(os.environ, NOTIFY_SOCKET=str(sock_path))
        proc = subprocess.Popen([sys.executable, "-m", "pyngx", "--no-watch", "-c", str(conf)], env=env,
                                stderr=subprocess.PIPE)
        try:
            msgs = [rx.recv(4096).decode()]
            assert msgs[0].startswith("READY=1")
            wait_listening("127.0.0.1", port)  # READY came after the socket listened
            proc.send_signal(signal.SIGHUP)
            msgs.append(rx.recv(4096).decode())
            msgs.append(rx.recv(4096).decode())
            proc.send_signal(signal.SIGTERM)
            msgs.append(rx.recv(4096).decode())
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
            rx.close()
        assert msgs[1].startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert int(msgs[1].split("MONOTONIC_USEC=")[1]) > 0
        assert msgs[2].startswith("READY=1")
        assert msgs[3] == "STOPPING=1"
        assert proc.returncode == 0


class TestSignals:
    def test_sigquit_drains_in_flight_requests(self, run_pyngx, backend):
        """SIGQUIT stops accepting, lets a slow in-flight request finish, then exits 0."""
        port = free_port()
        p = run_pyngx(f"error_log stderr notice; http {{ server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass {backend.url}; }} }} }}", port=port)
        result: list[tuple[int, str]] = []
        t = threading.Thread(target=lambda: result.append(get(port, "/slow/1.5")))
        t.start()
        wait_for(lambda: any(s.path.startswith("/slow") for s in backend.seen) or True)
        time.sleep(0.3)  # the request is in flight at the backend
        p.proc.send_signal(signal.SIGQUIT)
        t.join(15)
        assert result == [(200, "slow\n")]
        assert p.proc.wait(15) == 0
        assert "gracefully shutting down" in p.stderr

    def test_sigquit_closes_idle_keepalive_connections(self, run_pyngx):
        """SIGQUIT closes a keep-alive connection that waits for its next request at once (nginx closes
        idle connections on a graceful stop), instead of waiting for keepalive_timeout."""
        port = free_port()
        p = run_pyngx(f'http {{ server {{ listen 127.0.0.1:{port}; location / {{ return 200 "k"; }} }} }}', port=port)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            out = b""
            while not out.endswith(b"\r\n\r\nk"):
                out += s.recv(65536)
            t0 = time.monotonic()
            p.proc.send_signal(signal.SIGQUIT)
            assert s.recv(65536) == b""  # closed by pyngx, not by the 75 s keepalive_timeout
            assert p.proc.wait(10) == 0
            assert time.monotonic() - t0 < 5

    def test_sigterm_is_fast(self, run_pyngx, backend):
        """SIGTERM does not wait for a slow request."""
        port = free_port()
        p = run_pyngx(f"http {{ server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass {backend.url}; }} }} }}", port=port)
        t = threading.Thread(target=lambda: get(port, "/slow/20") if True else None, daemon=True)
        t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        p.proc.send_signal(signal.SIGTERM)
        assert p.proc.wait(10) == 0
        assert time.monotonic() - t0 < 5

    def test_s_reload_and_stop_through_pid_file(self, run_pyngx, tmp_path):
        """pyngx -s reload and -s stop find the daemon through its pid file."""
        port = free_port()
        pid = tmp_path / "p.pid"
        text = f"pid {pid}; http {{ server {{ listen 127.0.0.1:{port}; location / {{ return 200 V; }} }} }}"
        p = run_pyngx(text.replace("V", "v1"), port=port)
        wait_for(lambda: pid.exists() and pid.read_text().strip() != '')
        p.conf.write_text(text.replace("V", "v2"))
        # Stop the watcher from racing us: -s reload must work on its own too.
        out = pyngx_cmd("-s", "reload", "-c", str(p.conf))
        assert out.returncode == 0, out.stderr
        wait_for(lambda: get(port) == (200, "v2"))
        out = pyngx_cmd("-s", "stop", "-c", str(p.conf))
        assert out.returncode == 0
        assert p.proc.wait(10) == 0
        assert not pid.exists()

    def test_second_instance_with_same_pid_file_refuses(self, run_pyngx, tmp_path):
        """A second pyngx on a pid file another pyngx holds refuses to start."""
        port, port2 = free_port(), free_port()
        pid = tmp_path / "p.pid"
        run_pyngx(f"pid {pid}; http {{ server {{ listen 127.0.0.1:{port}; }} }}", port=port)
        wait_for(lambda: pid.exists() and pid.read_text().strip() != '')
        conf = tmp_path / "second.conf"
        conf.write_text(f"pid {pid}; http {{ server {{ listen 127.0.0.1:{port2}; }} }}")
        out = pyngx_cmd("-c", str(conf))
        assert out.returncode == 1
        assert f'pid file "{pid}" is locked by another pyngx process' in out.stderr

    def test_usr1_reopens_access_log(self, run_pyngx, tmp_path):
        """After logrotate moves the access log, SIGUSR1 makes pyngx write a new file."""
        port = free_port()
        log = tmp_path / "access.log"
        p = run_pyngx(f"http {{ access_log {log}; server {{ listen 127.0.0.1:{port}; location / {{ return 200 ok; }} }} }}", port=port)
        get(port, "/first")
        wait_for(lambda: log.exists() and "/first" in log.read_text())
        rotated = tmp_path / "access.log.1"
        os.rename(log, rotated)
        p.proc.send_signal(signal.SIGUSR1)
        wait_for(log.exists)
        get(port, "/second")
        wait_for(lambda: "/second" in log.read_text())
        assert "/second" not in rotated.read_text()


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


class TestWorkers:
    def test_two_workers_serve_reload_and_restart(self, run_pyngx):
        """worker_processes 2: two workers serve, a reload reaches both, a killed worker is replaced."""
        port = free_port()
        text = f"worker_processes 2; error_log stderr notice; http {{ access_log off; server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"$pid V\"; }} }} }}"
        p = run_pyngx(text.replace("V", "v1"), port=port)
        wait_for(lambda: len(_children(p.pid)) == 2)
        workers = set(_children(p.pid))
        seen_pids = set()
        for _ in range(60):
            status, body = get(port)
            seen_pids.add(int(body.split()[0]))
        assert seen_pids <= workers
        p.conf.write_text(text.replace("V", "v2"))
        wait_for(lambda: all(get(port)[1].endswith("v2") for _ in range(20)))
        victim = next(iter(workers))
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(_children(p.pid)) == 2 and victim not in _children(p.pid))
        assert get(port)[0] == 200
        assert "exited with code" in p.stderr
        assert p.stop() == 0


class TestLogs:
    def test_log_format_json_and_escape(self, run_pyngx, tmp_path):
        """log_format with escape=json, the built-in json format and combined's \\xXX escapes."""
        import json

        port = free_port()
        p = run_pyngx(f"""http {{
            log_format mine escape=json '{{"s":$status,' '"ua":"$http_user_agent"}}';
            server {{ listen 127.0.0.1:{port};
                access_log {tmp_path}/mine.log mine; access_log {tmp_path}/json.log json; access_log {tmp_path}/c.log;
                location / {{ return 200 x; }} }} }}""", port=port)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/q", headers={"User-Agent": 'a"b\\c'})
        urllib.request.urlopen(req, timeout=5).read()
        wait_for(lambda: all((tmp_path / n).exists() and (tmp_path / n).read_text() for n in ("mine.log", "json.log", "c.log")))
        assert json.loads((tmp_path / "mine.log").read_text()) == {"s": 200, "ua": 'a"b\\c'}
        entry = json.loads((tmp_path / "json.log").read_text())
        assert entry["request"] == "GET /q HTTP/1.1" and entry["status"] == 200 and entry["remote_user"] == ""
        assert (tmp_path / "c.log").read_text().rstrip().endswith('"-" "a\\x22b\\x5Cc"')
        assert p.proc.poll() is None

    def test_error_log_file_and_level(self, run_pyngx, tmp_path):
        """error_log FILE LEVEL writes nginx-shaped lines at that level and above only."""
        port, dead = free_port(), free_port()
        log = tmp_path / "error.log"
        run_pyngx(f"error_log {log} warn; http {{ server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://127.0.0.1:{dead}; }} }} }}", port=port)
        get(port, "/x")
        wait_for(lambda: log.exists() and "[error]" in log.read_text())
        text = log.read_text()
        assert "[notice]" not in text  # "started" is below warn
        import re

        assert re.search(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[error\] \d+#0: upstream_failed: connect\(\) failed", text, re.M)

    def test_unknown_log_format_is_config_error(self, tmp_path):
        """access_log with an undefined format fails -t with nginx's message."""
        conf = tmp_path / "c.conf"
        conf.write_text("http {\n  access_log x.log nosuch;\n}\n")
        out = pyngx_cmd("-t", "-c", str(conf))
        assert out.returncode == 1
        assert f'pyngx: [emerg] unknown log format "nosuch" in {conf}:2' in out.stderr
