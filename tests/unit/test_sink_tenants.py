"""SINKS "tenants": a sink receives only the events of the tenants it names (pure parsing)."""

from __future__ import annotations

import json

import pytest

from shared.config.sinks import parse_sinks, sink_tenants
from shared.errors import InvalidSettingError

A = "11111111-1111-1111-1111-111111111111"


def _environ(entry: dict[str, object]) -> dict[str, str]:
    return {"SINKS": json.dumps([{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"} | entry])}


def test_a_sink_naming_tenants_is_given_them_in_canonical_form() -> None:
    environ = _environ({"type": "webhook", "url": "https://x.example/h", "tenants": [A.upper()], "name": "only-a"})
    assert sink_tenants(environ) == {"only-a": frozenset({A})}


def test_a_sink_without_tenants_takes_every_tenants_events() -> None:
    environ = _environ({"type": "webhook", "url": "https://x.example/h"})
    assert sink_tenants(environ) == {}


@pytest.mark.parametrize("tenants", [[], "all", ["contoso.onmicrosoft.com"], [1]])
def test_a_bad_tenants_list_names_the_entry(tenants: object) -> None:
    with pytest.raises(InvalidSettingError, match="entry 0"):
        parse_sinks(_environ({"type": "webhook", "url": "https://x.example/h", "tenants": tenants}))
