"""scripts/activate-event-grid.sh against a stand-in `az` that answers from files and records what it is asked."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "activate-event-grid.sh"
SUB = "00000000-1111-2222-3333-444444444444"
TOPIC_ID = f"/subscriptions/{SUB}/resourceGroups/rg-env/providers/Microsoft.EventGrid/partnerTopics/graph-env"
APP_GROUP = f"/subscriptions/{SUB}/resourceGroups/rg-env/providers"
STORAGE_ID = f"{APP_GROUP}/Microsoft.Storage/storageAccounts/stenv"
CONTAINER_ID = f"{STORAGE_ID}/blobServices/default/containers/eventgrid-deadletter"
PRINCIPAL = "99999999-8888-7777-6666-555555555555"
INPUTS = {
    "EVENT_GRID_PARTNER_TOPIC": "graph-env",
    "EVENT_GRID_AZURE_SUBSCRIPTION_ID": SUB,
    "EVENT_GRID_RESOURCE_GROUP": "rg-env",
    "EVENT_GRID_DEAD_LETTER_CONTAINER": "eventgrid-deadletter",
    "AZURE_RESOURCE_GROUP": "rg-env",
    "AZURE_FUNCTION_APP_NAME": "func-env",
    "AZURE_STORAGE_ACCOUNT_NAME": "stenv",
}

# A stand-in for the Azure CLI. The partner topic's "<state>\t<principal>" comes from $FAKE/topic (empty:
# Graph has not created it; $FAKE/hidden counts lists that still see nothing), the role assignments found
# from $FAKE/granted, the event subscription's state from $FAKE/provisioning. Each call is appended to
# $FAKE/calls on one line; a --body goes to $FAKE/body-<method>.json. $FAKE/list-fails makes the list fail.
FAKE_AZ = r"""#!/usr/bin/env bash
echo "$*" | tr '\n' ' ' >>"$FAKE/calls"; echo >>"$FAKE/calls"
method=""; prev=""
for arg in "$@"; do
  [[ "$prev" == --method ]] && method="$arg"
  [[ "$prev" == --body ]] && printf '%s' "$arg" >"$FAKE/body-$method.json"
  prev="$arg"
done
case "$*" in
  "eventgrid partner topic list "*)
    [[ ! -e "$FAKE/list-fails" ]] || { echo "ERROR: (AuthorizationFailed) no access" >&2; exit 1; }
    hidden="$(cat "$FAKE/hidden")"
    if ((hidden > 0)); then echo $((hidden - 1)) >"$FAKE/hidden"; exit 0; fi
    cat "$FAKE/topic" ;;
  "eventgrid partner topic activate "*) ;;
  "rest --method patch "*) ;;
  "eventgrid partner topic show "*) echo 99999999-8888-7777-6666-555555555555 ;;
  "role assignment list "*) cat "$FAKE/granted" ;;
  "role assignment create "*) ;;
  "rest --method put "*) ;;
  "eventgrid partner topic event-subscription show "*) cat "$FAKE/provisioning" ;;
  *) echo "unexpected: az $*" >&2; exit 3 ;;
esac
"""

# `azd env get-values` prints the environment as KEY="value" lines.
FAKE_AZD = r"""#!/usr/bin/env bash
[[ "$*" == "env get-values" ]] || { echo "unexpected: azd $*" >&2; exit 3; }
cat "$FAKE/azd-values"
"""


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("az", FAKE_AZ), ("azd", FAKE_AZD)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    for name, text in (("calls", ""), ("hidden", "0"), ("topic", ""), ("granted", "0"), ("provisioning", "Succeeded")):
        (tmp_path / name).write_text(text)
    (tmp_path / "azd-values").write_text("".join(f'{key}="{value}"\n' for key, value in INPUTS.items()))
    return tmp_path


def run(fake: Path, *args: str, inputs: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if key not in INPUTS}
    env = {**base, **(INPUTS if inputs is None else inputs), "FAKE": str(fake), "PATH": f"{fake / 'bin'}:/usr/bin:/bin"}
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)


def calls(fake: Path) -> list[str]:
    return (fake / "calls").read_text().splitlines()


def changes(fake: Path) -> list[str]:
    """The calls that change something in Azure."""
    reads = ("eventgrid partner topic list", "eventgrid partner topic show", "role assignment list")
    return [call for call in calls(fake) if not call.startswith(reads) and "event-subscription show" not in call]


def test_with_the_channel_off_it_does_nothing(fake: Path) -> None:
    result = run(fake, inputs={**INPUTS, "EVENT_GRID_PARTNER_TOPIC": ""})
    assert result.returncode == 0, result.stderr
    assert "Event Grid delivery is off" in result.stdout
    assert calls(fake) == []


def test_before_graph_created_the_topic_it_exits_0_with_instructions_and_changes_nothing(fake: Path) -> None:
    result = run(fake)
    assert result.returncode == 0, result.stderr
    assert "has not created it yet" in result.stdout
    assert "scripts/activate-event-grid.sh --wait" in result.stdout
    assert calls(fake) == [
        f"eventgrid partner topic list --subscription {SUB} --resource-group rg-env "
        "--query [?name=='graph-env'] | [0].[activationState, identity.principalId] --output tsv "
    ]


def test_a_failing_look_up_is_not_taken_for_a_missing_topic(fake: Path) -> None:
    (fake / "list-fails").write_text("")
    result = run(fake)
    assert result.returncode != 0
    assert "AuthorizationFailed" in result.stderr
    assert "has not created it yet" not in result.stdout


def test_first_run_activates_the_topic_grants_its_identity_and_subscribes_the_function(fake: Path) -> None:
    (fake / "topic").write_text("NeverActivated\t\n")
    result = run(fake)
    assert result.returncode == 0, result.stderr
    made = changes(fake)
    assert [call.split(" --")[0] for call in made] == [
        "eventgrid partner topic activate",
        "rest",
        "role assignment create",
        "rest",
    ]
    assert "--name graph-env" in made[0]
    assert f"--method patch --url {TOPIC_ID}?api-version=" in made[1]
    assert json.loads((fake / "body-patch.json").read_text()) == {"identity": {"type": "SystemAssigned"}}
    assert (
        f"--assignee-object-id {PRINCIPAL} --assignee-principal-type ServicePrincipal "
        f"--role ba92f5b4-2d11-453d-a403-e96b0029c9fe --scope {CONTAINER_ID}"
    ) in made[2]
    assert f"--method put --url {TOPIC_ID}/eventSubscriptions/eventgrid?api-version=" in made[3]
    assert json.loads((fake / "body-put.json").read_text()) == {
        "properties": {
            "destination": {
                "endpointType": "AzureFunction",
                "properties": {"resourceId": f"{APP_GROUP}/Microsoft.Web/sites/func-env/functions/eventgrid"},
            },
            "eventDeliverySchema": "CloudEventSchemaV1_0",
            "retryPolicy": {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440},
            "deadLetterWithResourceIdentity": {
                "identity": {"type": "SystemAssigned"},
                "deadLetterDestination": {
                    "endpointType": "StorageBlob",
                    "properties": {"resourceId": STORAGE_ID, "blobContainerName": "eventgrid-deadletter"},
                },
            },
        }
    }
    assert "event subscription eventgrid: graph-env -> function eventgrid" in result.stdout


def test_a_second_run_finds_everything_in_place_and_rewrites_only_the_same_subscription(fake: Path) -> None:
    (fake / "topic").write_text(f"Activated\t{PRINCIPAL}\n")
    (fake / "granted").write_text("1\n")
    result = run(fake, "--max-delivery-attempts", "10", "--event-ttl", "60")
    assert result.returncode == 0, result.stderr
    assert [call.split(" --")[0] for call in changes(fake)] == ["rest"]
    assert "already activated" in result.stdout
    assert "already has Storage Blob Data Contributor" in result.stdout
    body = json.loads((fake / "body-put.json").read_text())
    assert body["properties"]["retryPolicy"] == {"maxDeliveryAttempts": 10, "eventTimeToLiveInMinutes": 60}
    role_list = next(call for call in calls(fake) if call.startswith("role assignment list"))
    assert f"--scope {CONTAINER_ID}" in role_list
    assert f"[?principalId=='{PRINCIPAL}']" in role_list


def test_another_topic_can_be_named(fake: Path) -> None:
    (fake / "topic").write_text(f"Activated\t{PRINCIPAL}\n")
    (fake / "granted").write_text("1\n")
    result = run(fake, "--topic", "graph-other")
    assert result.returncode == 0, result.stderr
    assert "[?name=='graph-other']" in calls(fake)[0]
    other = TOPIC_ID.replace("/graph-env", "/graph-other")
    assert f"--url {other}/eventSubscriptions/eventgrid?" in changes(fake)[0]


def test_it_waits_for_the_topic_when_asked(fake: Path) -> None:
    (fake / "hidden").write_text("1")
    (fake / "topic").write_text(f"Activated\t{PRINCIPAL}\n")
    (fake / "granted").write_text("1\n")
    # bash's SECONDS ticks in whole seconds: a wait of 4 leaves the first look 3 s, even on a loaded box.
    result = run(fake, "--wait", "4")
    assert result.returncode == 0, result.stderr
    assert re.search(r"not created yet, looking again in [1-4]s", result.stdout), result.stdout
    assert "already activated" in result.stdout


def test_dry_run_changes_nothing(fake: Path) -> None:
    (fake / "topic").write_text("NeverActivated\t\n")
    result = run(fake, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert changes(fake) == []
    assert result.stdout.splitlines() == [
        "partner topic graph-env: would activate (now NeverActivated)",
        "partner topic graph-env: would get a system-assigned identity",
        "container eventgrid-deadletter: would grant the topic's identity Storage Blob Data Contributor",
        "event subscription eventgrid: would write (function eventgrid, CloudEvents 1.0, 30 attempts, "
        "1440 minutes, dead letters to eventgrid-deadletter)",
    ]


def test_a_failed_event_subscription_fails_the_script_with_what_to_check(fake: Path) -> None:
    (fake / "topic").write_text(f"Activated\t{PRINCIPAL}\n")
    (fake / "granted").write_text("1\n")
    (fake / "provisioning").write_text("Failed\n")
    result = run(fake)
    assert result.returncode == 1
    assert "function eventgrid must be deployed" in result.stderr


def test_inputs_missing_from_the_environment_come_from_azd(fake: Path) -> None:
    (fake / "topic").write_text(f"Activated\t{PRINCIPAL}\n")
    (fake / "granted").write_text("1\n")
    result = run(fake, inputs={})
    assert result.returncode == 0, result.stderr
    assert f"--url {TOPIC_ID}/eventSubscriptions/eventgrid?" in changes(fake)[0]


def test_without_the_azure_cli_it_says_so(fake: Path) -> None:
    (fake / "bin" / "az").unlink()
    result = run(fake)
    assert result.returncode == 2
    assert "the Azure CLI (az) is not installed" in result.stderr


def test_a_missing_input_is_named_before_any_call(fake: Path) -> None:
    (fake / "azd-values").write_text("")
    result = run(fake, inputs={key: value for key, value in INPUTS.items() if key != "AZURE_FUNCTION_APP_NAME"})
    assert result.returncode == 2
    assert "AZURE_FUNCTION_APP_NAME is not set" in result.stderr
    assert calls(fake) == []


BAD_OPTIONS = [
    ("--max-delivery-attempts", "31"),
    ("--event-ttl", "0"),
    ("--wait", "soon"),
    ("--topic", "a b"),
    ("-x", ""),
]


@pytest.mark.parametrize("args", BAD_OPTIONS)
def test_a_bad_option_is_refused_before_any_call(fake: Path, args: tuple[str, str]) -> None:
    result = run(fake, *args)
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert calls(fake) == []


def test_azd_runs_the_script_after_each_deploy() -> None:
    azure_yaml = (ROOT / "azure.yaml").read_text()
    hook = re.search(r"^hooks:\n  postdeploy:\n    posix:\n((?:      .*\n)+)", azure_yaml, re.MULTILINE)
    assert hook, "azure.yaml has no postdeploy hook"
    assert "      run: bash scripts/activate-event-grid.sh\n" in hook.group(1)
    # A failure is shown, and the deploy it follows still counts as done.
    assert "      continueOnError: true\n" in hook.group(1)


def test_the_script_reads_only_values_the_templates_output() -> None:
    names = re.search(r"^inputs=\(([^)]*)\)", SCRIPT.read_text(), re.MULTILINE)
    assert names
    outputs = set(re.findall(r"^output (\w+) ", (ROOT / "infra" / "main.bicep").read_text(), re.MULTILINE))
    assert set(names.group(1).split()) == set(INPUTS)
    assert sorted(set(INPUTS) - outputs) == []
