"""The processor's contract with the Functions host."""

from __future__ import annotations

import json
from pathlib import Path

from shared.processor import MAX_ATTEMPTS

HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"


def test_the_app_poisons_on_the_attempt_the_host_would():
    # The processor moves a message on its last attempt; host.json decides which attempt that is.
    host = json.loads(HOST_JSON.read_text())

    assert host["extensions"]["queues"]["maxDequeueCount"] == MAX_ATTEMPTS
