"""What the daemon keeps resident: optional packages it never uses stay unloaded (pyngx.memory)."""

from __future__ import annotations

import subprocess
import sys

from pyngx.memory import hidden


def test_daemon_imports_leave_out_unused_packages(tmp_path) -> None:
    """Importing the daemon and loading a config loads neither lark's optional ``regex``, structlog's
    ``colorama`` (and its ``ctypes``), nor ``difflib``/``glob`` (only error hints and ``include`` use them)."""
    code = (
        "import sys, pyngx.cli, pyngx.server, pyngx.app, pyngx.reload, pyngx.log\n"
        "from pyngx.config import load\n"
        "load(sys.argv[1])\n"
        "print(sorted(m for m in ('regex', 'colorama', 'ctypes', 'difflib', 'glob') if m in sys.modules))\n"
    )
    conf = tmp_path / "pyngx.conf"
    conf.write_text("http { server { listen 127.0.0.1:1; location / { return 200; } } }")
    out = subprocess.run([sys.executable, "-c", code, str(conf)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_hidden_blocks_then_restores() -> None:
    """Inside ``hidden`` an import fails as if the package were not installed; afterwards it works again."""
    import json

    with hidden("json"):
        try:
            import json as again  # noqa: F401
        except ImportError:
            blocked = True
        else:
            blocked = False
    assert blocked
    assert sys.modules["json"] is json
