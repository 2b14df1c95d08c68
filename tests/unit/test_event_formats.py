"""The change event's CloudEvents form: type names, the envelope, reading either form back, the schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from cloudevents.core.formats.json import JSONFormat

from shared.config.events import event_format
from shared.errors import InvalidSettingError
from shared.model.changes import SourceChange
from shared.model.cursor import Mode
from shared.model.event_formats import (
    cloud_attributes,
    event_type,
    fit_structured,
    http_message,
    is_cloud_event,
    native_event,
    structured_json,
)
from shared.model.events import ChangeEvent, Context, classify_page, event_id, tenant_removed
from shared.model.notifications import MAX_MESSAGE_JSON_BYTES
from shared.model.tenant import Tenant

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "change-event.schema.json").read_text())
NOW = datetime(2026, 11, 22, 10, 0, 1, 123456, tzinfo=UTC)
DRIVE = "b!dGVzdC1kcml2ZS1vbmU"
RESOURCE = f"drives/{DRIVE}/root"
TENANT = "11111111-1111-1111-1111-111111111111"


def drive_event(item: dict[str, Any] | None = None, change_type: str = "created") -> ChangeEvent:
    item = {"id": "item-1", "name": "report.docx", "eTag": '"{A},1"'} if item is None else item
    return ChangeEvent(
        id=event_id("driveItem", DRIVE, "item-1", change_type, "v1"),
        subscription_id="sub-1",
        resource=RESOURCE,
        kind="driveItem",
        change_type=change_type,
        item_id="item-1",
        container_id=DRIVE,
        item=item if change_type != "deleted" else None,
        observed_at=NOW,
        tenant_id=TENANT,
    )


def read(text: str) -> Any:
    """Parsed by the cloudevents package, as a consumer would."""
    return JSONFormat().read(None, text)


# --- type names ------------------------------------------------------------------------------


KINDS = SCHEMA["$defs"]["native"]["properties"]["kind"]["enum"]


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "tenant"])
@pytest.mark.parametrize("change_type", ["created", "updated", "deleted"])
def test_every_kind_and_change_type_names_a_type_the_schema_accepts(kind: str, change_type: str) -> None:
    name = event_type(kind, change_type)
    assert name == f"com.graphhooks.{kind}.{change_type}"
    jsonschema.validate(name, SCHEMA["$defs"]["cloudEvent"]["properties"]["type"])


def test_type_names_keep_graphs_case() -> None:
    assert event_type("driveItem", "created") == "com.graphhooks.driveItem.created"
    assert event_type("chatMessage", "deleted") == "com.graphhooks.chatMessage.deleted"


@pytest.mark.parametrize(("kind", "change_type"), [("", "created"), ("driveItem", "")])
def test_a_type_needs_a_kind_and_a_change_type(kind: str, change_type: str) -> None:
    with pytest.raises(ValueError, match="kind and a changeType"):
        event_type(kind, change_type)


# --- the envelope ----------------------------------------------------------------------------


def test_a_classified_event_becomes_a_cloudevent_whose_data_is_the_native_event_unchanged() -> None:
    context = Context(Mode.DELTA, "driveItem", DRIVE, "sub-1", RESOURCE, NOW, tenant_id=TENANT)
    change = SourceChange("item-1", '"{A},1"', {"id": "item-1", "name": "日本語.docx", "eTag": '"{A},1"'})
    [event] = classify_page([change], {}, context).events

    text = fit_structured(event.to_json())
    parsed = read(text)

    assert parsed.get_specversion() == "1.0"
    assert parsed.get_id() == event.id == event_id("driveItem", DRIVE, "item-1", "created", '"{A},1"')
    assert parsed.get_source() == RESOURCE
    assert parsed.get_type() == "com.graphhooks.driveItem.created"
    assert parsed.get_subject() == "item-1"
    assert parsed.get_time() == NOW
    assert parsed.get_datacontenttype() == "application/json"
    assert parsed.get_data() == event.to_dict()  # tenantId included
    assert parsed.get_data()["tenantId"] == TENANT
    jsonschema.validate(json.loads(text), SCHEMA)


def test_tenant_removed_is_a_cloudevent_of_its_own_type() -> None:
    tenant = Tenant(TENANT, "Contoso", "removing", NOW, NOW, reason="consent revoked")
    event = tenant_removed(tenant, NOW)

    parsed = read(fit_structured(event.to_json()))

    assert parsed.get_type() == "com.graphhooks.tenant.removed"
    assert (parsed.get_source(), parsed.get_subject()) == (f"tenants/{TENANT}", TENANT)
    assert parsed.get_id() == event.id
    jsonschema.validate(json.loads(fit_structured(event.to_json())), SCHEMA)


def test_a_deletion_has_no_item_in_its_data() -> None:
    event = drive_event(change_type="deleted")
    document = json.loads(fit_structured(event.to_json()))
    assert document["type"] == "com.graphhooks.driveItem.deleted"
    assert document["data"]["item"] is None
    jsonschema.validate(document, SCHEMA)


def test_an_envelope_over_the_message_limit_drops_the_item_from_its_data() -> None:
    # Fits a native message, not once wrapped (and non-ASCII is escaped by the package's JSON).
    event = drive_event({"id": "item-1", "description": "é" * (MAX_MESSAGE_JSON_BYTES // 2 - 400)})
    native = event.to_json()
    assert len(native.encode()) <= MAX_MESSAGE_JSON_BYTES

    text = fit_structured(native)

    assert len(text.encode()) <= MAX_MESSAGE_JSON_BYTES
    data = read(text).get_data()
    assert data == event.to_dict() | {"item": None, "itemOmitted": True}
    jsonschema.validate(json.loads(text), SCHEMA)


def test_a_message_that_already_is_a_cloudevent_is_kept() -> None:
    text = structured_json(drive_event().to_dict())
    assert fit_structured(text) == text


def test_the_same_event_always_makes_the_same_cloudevent() -> None:
    event = drive_event()
    assert fit_structured(event.to_json()) == fit_structured(event.to_json())


def test_an_object_that_is_not_a_change_event_is_refused() -> None:
    with pytest.raises(ValueError, match="not a change event"):
        cloud_attributes({"id": "x", "kind": "driveItem"})


# --- reading either form ---------------------------------------------------------------------


def test_native_event_reads_both_forms() -> None:
    native = drive_event().to_dict()
    cloud = json.loads(structured_json(native))
    assert (is_cloud_event(native), is_cloud_event(cloud)) == (False, True)
    assert native_event(cloud) == native_event(native) == native
    flush = {"sinkFlush": {"subscriptionId": "s", "window": "w"}}
    assert native_event(flush) is flush


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_http_messages_in_both_content_modes_read_back_as_the_same_cloudevent(mode: Any) -> None:
    native = drive_event().to_dict()
    headers, body = http_message(native, mode)

    parsed = from_http_event(HTTPMessage(headers, body))

    assert (parsed.get_id(), parsed.get_type(), parsed.get_subject()) == (
        native["id"],
        "com.graphhooks.driveItem.created",
        "item-1",
    )
    assert parsed.get_data() == native
    if mode == "binary":
        assert headers["content-type"] == "application/json"
        assert headers["ce-source"] == RESOURCE and json.loads(body) == native
    else:
        assert headers == {"content-type": "application/cloudevents+json"}
        assert json.loads(body)["data"] == native


# --- the schema --------------------------------------------------------------------------------


def test_the_schema_still_refuses_a_bad_native_event_and_refuses_a_cloudevent_with_bad_data() -> None:
    native = drive_event().to_dict()
    cloud = json.loads(structured_json(native))
    jsonschema.validate(native, SCHEMA)
    jsonschema.validate(cloud, SCHEMA)
    for bad in (
        native | {"extra": 1},
        cloud | {"data": native | {"kind": "spaceship"}},
        cloud | {"type": "com.example.other"},
        cloud | {"specversion": "0.3"},
        {k: v for k, v in cloud.items() if k != "subject"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)


# --- EVENT_FORMAT ------------------------------------------------------------------------------


def test_event_format_defaults_to_native_and_takes_cloudevents() -> None:
    assert event_format({}) == "native"
    assert event_format({"EVENT_FORMAT": " CloudEvents "}) == "cloudevents"


def test_an_unknown_event_format_is_named() -> None:
    with pytest.raises(InvalidSettingError) as caught:
        event_format({"EVENT_FORMAT": "avro"})
    assert caught.value.key == "EVENT_FORMAT"


def test_settings_carry_the_event_format(make_env: Any) -> None:
    from shared.config.settings import Settings

    assert Settings.from_env(make_env()).event_format == "native"
    assert Settings.from_env(make_env(EVENT_FORMAT="cloudevents")).event_format == "cloudevents"


# --- the fan-out's tenant filter, and events tail ----------------------------------------------


class Queue:
    """Stands for a MessageQueue: its name and what was sent to it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.texts: list[str] = []

    async def send_all(self, texts: Any) -> None:
        self.texts += list(texts)


@pytest.mark.parametrize("form", ["native", "cloudevents"])
async def test_the_fanout_sends_the_format_and_filters_tenants_in_either(form: str) -> None:
    from shared.sync.fanout import EventFanout

    ours, theirs = drive_event(), drive_event({"id": "item-1", "name": "b"}, "updated")
    theirs = ChangeEvent(**{**theirs.__dict__, "tenant_id": "22222222-2222-2222-2222-222222222222"})
    changes, only_ours = Queue("graph-changes"), Queue("only-ours")
    fanout = EventFanout(changes, [only_ours], tenants={"only-ours": frozenset({TENANT})}, event_format=form)

    await fanout.send_all([ours.to_json(), theirs.to_json()])

    assert [native_event(json.loads(t))["id"] for t in changes.texts] == [ours.id, theirs.id]
    assert [native_event(json.loads(t))["id"] for t in only_ours.texts] == [ours.id]
    assert all(is_cloud_event(json.loads(t)) == (form == "cloudevents") for t in changes.texts + only_ours.texts)
    if form == "native":
        assert changes.texts == [ours.to_json(), theirs.to_json()]  # today's text exactly


@pytest.mark.parametrize("form", ["native", "cloudevents"])
def test_events_tail_prints_either_form_alike(form: str, capsys: Any) -> None:
    from graphhooks.events import _print

    native = drive_event().to_json()
    text = native if form == "native" else fit_structured(native)

    _print(text, as_json=False)
    line = capsys.readouterr().out
    _print(text, as_json=True)
    raw = capsys.readouterr().out

    assert "created" in line and "driveItem" in line and "item-1" in line and "report.docx" in line
    assert RESOURCE in line
    assert raw == text + "\n"  # --json: the message as the app sent it


def test_the_native_path_never_imports_the_cloudevents_package() -> None:
    import subprocess
    import sys

    code = (
        "import sys, json; from shared.sync.fanout import _tenant_of; from shared.sinks.runner import SinkMessage; "
        "import shared.sinks.webhook, shared.app.worker, graphhooks.events; "
        "SinkMessage.from_text(json.dumps({'id': 'x'})).event; _tenant_of(json.dumps({'tenantId': 't'})); "
        "print([m for m in sys.modules if m.startswith(('cloudevents', 'dateutil'))])"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
