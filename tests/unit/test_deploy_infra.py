"""The deployment templates' contracts with the app (checkov checks the rest in `make deploy-check`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from shared import telemetry

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


def test_the_workbook_charts_every_metric_the_app_exports() -> None:
    book = json.loads((INFRA / "app" / "workbook.json").read_text())
    queries = " ".join(item["content"].get("query", "") for item in book["items"])
    names = [
        telemetry.RECEIVED,
        telemetry.ENQUEUED,
        telemetry.REJECTED,
        telemetry.DELTA_RUNS,
        telemetry.DELTA_DURATION,
        telemetry.EVENTS_EMITTED,
        telemetry.RENEWALS,
        telemetry.QUEUE_DEPTH,
    ]
    assert [name for name in names if f"'{name}'" not in queries] == []


def test_every_checkov_skip_gives_its_reason() -> None:
    skips = [
        (path.name, line.strip())
        for path in INFRA.rglob("*.bicep")
        for line in path.read_text().splitlines()
        if "checkov:skip" in line
    ]
    assert skips, "the templates skip some checks; each must be listed here"
    bare = [(name, line) for name, line in skips if not re.fullmatch(r"//checkov:skip=CKV2?_AZURE_\d+:.{30,}", line)]
    assert bare == []


def test_graph_calls_the_routes_with_a_function_key() -> None:
    settings = (INFRA / "app" / "settings.bicep").read_text()
    assert "HTTP_AUTH_LEVEL: 'function'" in settings
    assert "NOTIFICATION_URL: 'https://${hostName}/api/notifications?code=${functionKey}'" in settings
    assert "LIFECYCLE_NOTIFICATION_URL: 'https://${hostName}/api/lifecycle?code=${functionKey}'" in settings


def test_storage_is_reached_with_the_identity_only() -> None:
    storage = (INFRA / "app" / "storage.bicep").read_text()
    assert "allowSharedKeyAccess: false" in storage
    settings = (INFRA / "app" / "settings.bicep").read_text()
    assert "AzureWebJobsStorage__credential: 'managedidentity'" in settings
    assert "AzureWebJobsStorage:" not in settings  # no connection string with a key


def test_azd_parameters_name_only_parameters_main_declares() -> None:
    declared = set(re.findall(r"^param (\w+)", (INFRA / "main.bicep").read_text(), re.MULTILINE))
    given = set(json.loads((INFRA / "main.parameters.json").read_text())["parameters"])
    assert given - declared == set()


def _module_calls(text: str) -> list[tuple[str, set[str]]]:
    """(module file, parameter names given) for each `module … 'file' = … { params: { … } }`."""
    calls = []
    for match in re.finditer(r"^module \w+ '([^']+)' = [^\n]*\{\n(.*?)^\}", text, re.MULTILINE | re.DOTALL):
        params = re.search(r"^  params: \{\n(.*?)^  \}", match.group(2), re.MULTILINE | re.DOTALL)
        names = set(re.findall(r"^    (\w+):", params.group(1), re.MULTILINE)) if params else set()
        calls.append((match.group(1), names))
    return calls


def _declared(path: Path) -> tuple[set[str], set[str]]:
    """A Bicep file's parameters, and those without a default (required)."""
    params = re.findall(r"^param (\w+) \w+( =)?", path.read_text(), re.MULTILINE)
    return {name for name, _ in params}, {name for name, default in params if not default}


def test_every_module_gets_exactly_the_parameters_it_declares() -> None:
    problems = []
    calls = [(caller, call) for caller in INFRA.rglob("*.bicep") for call in _module_calls(caller.read_text())]
    assert len(calls) >= 9  # main.bicep's eight modules and the Key Vault secret
    for caller, (file, given) in calls:
        declared, required = _declared(caller.parent / file)
        problems += [f"{caller.name} → {file}: unknown {name}" for name in sorted(given - declared)]
        problems += [f"{caller.name} → {file}: missing {name}" for name in sorted(required - given)]
    assert problems == []
