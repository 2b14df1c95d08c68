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


# --- Event Grid delivery (docs/deploy.md, "Event Grid delivery") -----------------------------------

EVENT_GRID_SETTINGS = {
    "EVENT_GRID_AZURE_SUBSCRIPTION_ID",
    "EVENT_GRID_RESOURCE_GROUP",
    "EVENT_GRID_PARTNER_TOPIC",
    "EVENT_GRID_LOCATION",
}


def _declaration(text: str, kind: str, name: str) -> str:
    """The text of one `resource`/`module` declaration, from its line to its closing brace."""
    match = re.search(rf"^{kind} {name} '[^']+' = [^\n]*\{{\n.*?^\}}", text, re.MULTILINE | re.DOTALL)
    assert match, f"no {kind} {name}"
    return match.group(0)


def test_event_grid_delivery_is_off_unless_asked_for() -> None:
    main = (INFRA / "main.bicep").read_text()
    assert "param eventGridDelivery bool = false" in main
    assert _declaration(main, "module", "eventGrid").startswith(
        "module eventGrid 'app/eventgrid.bicep' = if (eventGridDelivery) {"
    )
    # Off, the app gets no EVENT_GRID_* setting and storage no dead-letter container.
    names = ("eventGridAzureSubscriptionId", "eventGridResourceGroup", "eventGridPartnerTopic", "eventGridLocation")
    for name in names:
        assert re.search(rf"^    {name}: eventGridDelivery \? .+ : ''$", main, re.MULTILINE), name
    assert "var deadLetterContainerName = eventGridDelivery ? 'eventgrid-deadletter' : ''" in main
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert given["eventGridDelivery"] == {"value": "${EVENT_GRID_DELIVERY=false}"}


def test_graph_is_authorized_to_create_the_partner_topic_until_an_expiry() -> None:
    module = (INFRA / "app" / "eventgrid.bicep").read_text()
    configuration = _declaration(module, "resource", "partnerConfiguration")
    assert configuration.startswith("resource partnerConfiguration 'Microsoft.EventGrid/partnerConfigurations@")
    assert "name: 'default'" in configuration
    assert "partnerName: 'MicrosoftGraphAPI'" in configuration
    assert "partnerRegistrationImmutableId: 'c02e0126-707c-436d-b6a1-175d2748fb58'" in configuration
    assert "authorizationExpirationTimeInUtc: authorizationExpiry" in configuration
    assert "defaultMaximumExpirationTimeInDays: authorizationDays" in configuration
    # Counted from each deployment, within Event Grid's 1 to 365 days, 90 unless the operator says otherwise.
    assert "var authorizationExpiry = dateTimeAdd(now, 'P${authorizationDays}D')" in module
    assert "param now string = utcNow()" in module
    assert re.search(r"@minValue\(1\)\n@maxValue\(365\)\n@description\([^\n]*\)\nparam authorizationDays int", module)
    assert "param eventGridAuthorizationDays int = 90" in (INFRA / "main.bicep").read_text()


def test_the_app_gets_the_partner_topic_settings_only_with_the_channel_on() -> None:
    settings = (INFRA / "app" / "settings.bicep").read_text()
    block = re.search(r"^var eventGrid = empty\(eventGridPartnerTopic\) \? \{\} : \{\n(.*?)^\}", settings, re.M | re.S)
    assert block, "the EVENT_GRID_* settings are not conditional on the topic"
    assert set(re.findall(r"^  (\w+):", block.group(1), re.MULTILINE)) == EVENT_GRID_SETTINGS
    assert "properties: union(required, tenancy, secret, certificate, eventGrid)" in settings
    # The same values are azd outputs, for scripts/activate-event-grid.sh and the operator.
    outputs = set(re.findall(r"^output (EVENT_GRID_\w+) ", (INFRA / "main.bicep").read_text(), re.MULTILINE))
    assert outputs >= EVENT_GRID_SETTINGS


def test_the_dead_letter_container_exists_only_with_the_channel_on() -> None:
    storage = (INFRA / "app" / "storage.bicep").read_text()
    container = _declaration(storage, "resource", "deadLetters")
    assert "= if (!empty(deadLetterContainerName)) {" in container.splitlines()[0]
    assert "publicAccess: 'None'" in container
