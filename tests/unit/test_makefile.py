"""The Makefile's targets: `make help` lists each with its `##` comment, `doctor` and `clean` do their job.

`make -n` prints a target's commands without running them.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _make(*args: str) -> str:
    done = subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _phony() -> list[str]:
    [line] = [line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith(".PHONY:")]
    return line.removeprefix(".PHONY:").split()


def test_every_declared_target_has_a_rule_and_a_line_in_make_help():
    listed = re.findall(r"^  make (\S+)\s+\S", _make("help"), re.MULTILINE)
    assert listed == [t for t in _phony() if t in listed]  # in the Makefile's order
    assert set(listed) == set(_phony())  # doctor was declared with no rule, and there was no help


def test_make_doctor_runs_azure_functions_doctor_and_deploy_check_runs_it_too():
    assert "azure-functions-doctor doctor --path ." in _make("-n", "doctor")
    assert "azure-functions-doctor doctor --path ." in _make("-n", "deploy-check")
    assert "checkov -d infra" in _make("-n", "deploy-check")


def test_make_clean_removes_the_egg_info_too():
    assert "*.egg-info" in _make("-n", "clean").split()


def test_make_test_says_what_each_step_does():
    commands = _make("-n", "test")
    for step in ('echo "lint: mypy', 'echo "test: pytest'):
        assert step in commands
    assert "pip install --quiet checkov" not in commands
