"""The man pages and the systemd unit: generated page in step, lint-clean, verifiable.

man/pyngx.conf.5 is generated from the directive table by pyngx.docs; the
first tests fail when the table changes and the page was not regenerated
(``python -m pyngx.docs``). The lint and verify tests run the real tools
and skip, saying which Debian package to install, when a tool is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pyngx.config.directives import DIRECTIVES, NGINX_DIRECTIVES
from pyngx.docs import main, render_conf5
from pyngx.variables import PREFIX_VARIABLES, VARIABLES

ROOT = Path(__file__).resolve().parent.parent
CONF5 = ROOT / "man" / "pyngx.conf.5"
PYNGX8 = ROOT / "man" / "pyngx.8"
UNIT = ROOT / "systemd" / "pyngx.service"
PAGES = [PYNGX8, CONF5]
INSTALLED_PYNGX = "/usr/local/bin/pyngx"


class TestConf5:
    def test_committed_page_is_generated(self) -> None:
        """man/pyngx.conf.5 is exactly what render_conf5() produces from the tables."""
        assert CONF5.read_text(encoding="utf-8") == render_conf5(), (
            "man/pyngx.conf.5 is stale: run python -m pyngx.docs"
        )

    def test_every_directive_has_an_entry(self) -> None:
        """Every supported directive has its own subsection."""
        page = render_conf5()
        missing = [name for name in DIRECTIVES if f"\n.SS {name}\n" not in page]
        assert missing == []

    def test_every_difference_is_flagged(self) -> None:
        """Each directive with a documented difference has a "Differs from nginx" paragraph."""
        page = render_conf5()
        for name, spec in DIRECTIVES.items():
            entry = page.split(f"\n.SS {name}\n", 1)[1].split("\n.S", 1)[0]
            assert ("Differs from nginx:" in entry) == bool(spec.differs), name

    def test_variables_and_unsupported_directives_are_listed(self) -> None:
        """Every variable, prefix variable and unsupported nginx directive is named."""
        page = render_conf5().replace("\\-", "-")
        assert [v for v in VARIABLES if f"\\fB${v}\\fR" not in page] == []
        assert [p for p in PREFIX_VARIABLES if f"\\fB${p}\\fIname" not in page] == []
        listed = NGINX_DIRECTIVES - {"include"}  # include is handled by the parser
        assert [d for d in listed if f"\\fB{d}\\fR" not in page] == []
        assert '"NAME" directive is not supported by pyngx' in page

    def test_main_writes_the_page(self, tmp_path: Path) -> None:
        """``python -m pyngx.docs PATH`` writes the rendered page to PATH."""
        out = tmp_path / "pyngx.conf.5"
        assert main([str(out)]) == 0
        assert out.read_text(encoding="utf-8") == render_conf5()


def _lint_command(tool: str, page: Path) -> list[str]:
    if tool == "mandoc":
        return ["mandoc", "-T", "lint", str(page)]
    return ["groff", "-man", "-Tutf8", "-ww", "-z", str(page)]


class TestManPagesRender:
    @pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
    @pytest.mark.parametrize("tool", ["mandoc", "groff"])
    def test_no_warnings(self, tool: str, page: Path) -> None:
        """Each man page renders with no warnings or style messages."""
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (Debian: apt-get install {'mandoc' if tool == 'mandoc' else 'groff-base'})")
        env = {**os.environ, "LC_ALL": "C.UTF-8"}
        proc = subprocess.run(_lint_command(tool, page), capture_output=True, text=True, env=env, timeout=60)
        assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


class TestSystemdUnit:
    def test_runs_the_system_config(self) -> None:
        """The unit tests /etc/pyngx/pyngx.conf, serves it as Type=notify, reloads with HUP, stops with QUIT."""
        lines = UNIT.read_text().splitlines()
        assert f"ExecStartPre={INSTALLED_PYNGX} -t -q -c /etc/pyngx/pyngx.conf" in lines
        assert f"ExecStart={INSTALLED_PYNGX} -c /etc/pyngx/pyngx.conf" in lines
        assert "Type=notify" in lines
        assert "ExecReload=/bin/kill -HUP $MAINPID" in lines
        assert "KillSignal=SIGQUIT" in lines

    def test_systemd_analyze_verify(self, tmp_path: Path) -> None:
        """``systemd-analyze verify`` accepts the unit, with the binary and man pages it names present."""
        if shutil.which("systemd-analyze") is None:
            pytest.skip("systemd-analyze not installed (Debian: apt-get install systemd)")
        # verify checks that ExecStart's binary exists and that the
        # Documentation= man pages resolve, so point both at this tree.
        pyngx = shutil.which("pyngx")
        command = pyngx if pyngx is not None else f"{sys.executable} -m pyngx"
        unit = tmp_path / "pyngx.service"
        unit.write_text(UNIT.read_text().replace(INSTALLED_PYNGX, command))
        for page, section in ((PYNGX8, "man8"), (CONF5, "man5")):
            (tmp_path / "man" / section).mkdir(parents=True)
            shutil.copy(page, tmp_path / "man" / section / page.name)
        env = {**os.environ, "MANPATH": str(tmp_path / "man"), "SYSTEMD_LOG_COLOR": "0"}
        proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, env=env,
                              timeout=120)
        # Only complaints about this unit count; the host's own units are not ours.
        ours = [line for line in (proc.stdout + proc.stderr).splitlines() if "pyngx" in line]
        assert (proc.returncode, ours) == (0, [])
