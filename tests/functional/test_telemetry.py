"""One trace from Graph's POST to the change event, and the counters, against Azurite and the simulator.

OpenTelemetry's SDK with in-memory exporters stands in for Application Insights.
"""

from __future__ import annotations

from shared import telemetry
from tests.functional.stacks import DRIVE, subscribed
from tests.unit.test_telemetry_api import counted, in_memory


async def test_one_trace_spans_the_post_and_the_queue_trigger_and_the_counters_count(stack_factory):
    spans, reader = in_memory()
    stack = await subscribed(stack_factory)
    before = {name: counted(reader, name, source="notifications") for name in (telemetry.RECEIVED, telemetry.ENQUEUED)}
    runs, emitted = counted(reader, telemetry.DELTA_RUNS), counted(reader, telemetry.EVENTS_EMITTED)
    spans.clear()

    item = await stack.control.create_item(DRIVE, "report.docx", "v1")
    await stack.pump(lambda: bool(stack.for_item(item["id"])))

    finished = spans.get_finished_spans()
    posts = [s for s in finished if s.name == "graphhooks.notifications"]
    processed = [s for s in finished if s.name == "graphhooks.process"]
    assert posts and processed
    post_traces = {s.context.trace_id for s in posts}
    assert any(s.context.trace_id in post_traces for s in processed)  # POST -> queue -> process: one trace
    assert counted(reader, telemetry.RECEIVED, source="notifications") > before[telemetry.RECEIVED]
    assert counted(reader, telemetry.ENQUEUED, source="notifications") > before[telemetry.ENQUEUED]
    assert counted(reader, telemetry.DELTA_RUNS) > runs
    assert counted(reader, telemetry.EVENTS_EMITTED) >= emitted + 1
    # The event itself carries no trace field: the event schema is unchanged.
    assert all("traceparent" not in event for event in stack.events)


async def test_notifications_with_a_wrong_client_state_are_counted_by_reason(stack_factory):
    import aiohttp

    _, reader = in_memory()
    stack = await subscribed(stack_factory)
    record = await stack.record()
    before = counted(reader, telemetry.REJECTED, reason="badClientState", source="notifications")
    forged = {"subscriptionId": record.subscription_id, "changeType": "updated", "clientState": "wrong"}

    url = stack.env["NOTIFICATION_URL"]
    async with aiohttp.ClientSession() as session, session.post(url, json={"value": [forged] * 3}) as response:
        assert response.status == 202

    assert counted(reader, telemetry.REJECTED, reason="badClientState", source="notifications") == before + 3
