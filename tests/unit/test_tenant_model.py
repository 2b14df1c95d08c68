"""Tenants: ids, statuses, keys, templates and the settings of a multi-tenant deployment (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.config.settings import Settings
from shared.config.subscriptions import parse_desired
from shared.config.tenants import consent_redirect_url, suspended_remove_after, tenant_mode
from shared.errors import InvalidSettingError, InvalidTenantError, MissingSettingError
from shared.model.resources import DesiredSubscription, for_tenant
from shared.model.tenant import (
    ACTIVE,
    PENDING,
    SUSPENDED,
    canonical_tenant_id,
    due_for_removal,
    due_for_retry,
    lost_access,
    new_tenant,
    scope_of,
    scoped_key,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
A = "11111111-1111-1111-1111-111111111111"
B = "22222222-2222-2222-2222-222222222222"
BASE = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "NOTIFICATION_URL": "https://hooks.example.com/api/notifications",
    "LIFECYCLE_NOTIFICATION_URL": "https://hooks.example.com/api/lifecycle",
    "GRAPH_CLIENT_ID": "00000000-0000-0000-0000-0000000000aa",
    "GRAPH_CLIENT_SECRET": "s",
}


def test_a_tenant_id_is_kept_as_a_lower_case_guid() -> None:
    assert canonical_tenant_id(" 11111111-1111-1111-1111-111111111111 ") == A
    assert canonical_tenant_id(A.upper()) == A


@pytest.mark.parametrize("text", ["contoso.onmicrosoft.com", "", "1111", "{" + A + "}", A.replace("-", "")])
def test_anything_but_a_guid_is_refused_as_a_tenant_id(text: str) -> None:
    with pytest.raises(InvalidTenantError):
        canonical_tenant_id(text)


def test_an_unprintable_or_overlong_name_is_refused() -> None:
    with pytest.raises(InvalidTenantError):
        new_tenant(A, "bad\nname", NOW)
    with pytest.raises(InvalidTenantError):
        new_tenant(A, "x" * 257, NOW)


def test_the_single_tenant_keeps_todays_keys_and_other_tenants_get_their_own() -> None:
    assert scoped_key("", "users|updated") == "users|updated"
    assert scoped_key(A, "users|updated") != scoped_key(B, "users|updated")
    assert scope_of(scoped_key(A, "users|updated")) == A
    assert scope_of("users|updated") == ""
    assert DesiredSubscription("users", "updated").key == "users|updated"
    assert DesiredSubscription("users", "updated", tenant=A).key == scoped_key(A, "users|updated")


def test_a_template_applies_to_every_tenant_unless_it_names_some() -> None:
    every = DesiredSubscription("users", "updated")
    only_b = DesiredSubscription("groups", "updated", tenants=frozenset({B}))
    own = DesiredSubscription("drives/d1/root", "updated", tenant=A)
    for_a = for_tenant([every, only_b, own], A)
    assert {(d.resource, d.tenant) for d in for_a} == {("users", A), ("drives/d1/root", A)}
    for_b = for_tenant([every, only_b, own], B)
    assert {(d.resource, d.tenant) for d in for_b} == {("users", B), ("groups", B)}


def test_a_tenants_own_entry_replaces_the_template_for_the_same_resource() -> None:
    template = DesiredSubscription("users", "updated")
    own = DesiredSubscription("users", "updated", include_resource_data=True, tenant=A)
    (only,) = for_tenant([template, own], A)
    assert only.include_resource_data


def test_a_suspension_keeps_its_first_time_and_an_activation_clears_it() -> None:
    tenant = new_tenant(A, "Contoso", NOW)
    assert tenant.status == PENDING and tenant.served
    once = tenant.suspended("AADSTS65001", NOW)
    again = once.suspended("AADSTS7000112", NOW + timedelta(hours=2))
    assert again.status == SUSPENDED and not again.served
    assert again.suspended_at == NOW and again.reason == "AADSTS7000112"
    back = again.activated(NOW + timedelta(hours=3))
    assert back.status == ACTIVE and back.suspended_at is None and back.reason == ""


def test_a_suspended_tenant_is_retried_hourly_and_removed_after_the_setting() -> None:
    tenant = new_tenant(A, "", NOW).suspended("AADSTS65001", NOW)
    assert not due_for_retry(tenant, NOW + timedelta(minutes=59))
    assert due_for_retry(tenant, NOW + timedelta(hours=1))
    assert not due_for_removal(tenant, NOW + timedelta(days=29), timedelta(days=30))
    assert due_for_removal(tenant, NOW + timedelta(days=30), timedelta(days=30))
    assert not due_for_removal(tenant, NOW + timedelta(days=3000), None)
    assert not due_for_removal(new_tenant(A, "", NOW), NOW + timedelta(days=300), timedelta(days=30))


@pytest.mark.parametrize("code", ["65001", "700016", "7000112"])
def test_token_errors_that_mean_consent_is_gone_are_recognised(code: str) -> None:
    message = f"ClientSecretCredential.get_token failed: AADSTS{code}: something. Trace ID: x"
    assert lost_access(message) == f"AADSTS{code}"


def test_a_passing_token_failure_is_not_taken_for_lost_consent() -> None:
    assert lost_access("AADSTS50058: a silent sign-in request was sent") is None
    assert lost_access("Connection reset by peer") is None


def test_tenant_mode_is_single_by_default_and_refuses_anything_else() -> None:
    assert tenant_mode({}) == "single"
    assert tenant_mode({"TENANT_MODE": "Multi"}) == "multi"
    with pytest.raises(InvalidSettingError, match="TENANT_MODE"):
        tenant_mode({"TENANT_MODE": "many"})


def test_suspended_tenants_are_removed_after_thirty_days_unless_set_otherwise() -> None:
    assert suspended_remove_after({}) == timedelta(days=30)
    assert suspended_remove_after({"TENANT_SUSPENDED_REMOVE_AFTER": "0"}) is None
    assert suspended_remove_after({"TENANT_SUSPENDED_REMOVE_AFTER": "7"}) == timedelta(days=7)
    with pytest.raises(InvalidSettingError, match="TENANT_SUSPENDED_REMOVE_AFTER"):
        suspended_remove_after({"TENANT_SUSPENDED_REMOVE_AFTER": "-1"})


def test_the_consent_redirect_defaults_to_the_apps_own_route() -> None:
    url = "https://hooks.example.com/api/notifications?code=k"
    assert consent_redirect_url({}, url) == "https://hooks.example.com/api/consent"
    assert consent_redirect_url({"CONSENT_REDIRECT_URL": "https://x.example/c"}, url) == "https://x.example/c"
    with pytest.raises(InvalidSettingError, match="CONSENT_REDIRECT_URL"):
        consent_redirect_url({"CONSENT_REDIRECT_URL": "x"}, url)


def test_single_mode_needs_graph_tenant_id_and_multi_mode_does_not_use_it() -> None:
    with pytest.raises(MissingSettingError, match="GRAPH_TENANT_ID"):
        Settings.from_env(BASE)
    multi = Settings.from_env({**BASE, "TENANT_MODE": "multi"})
    assert multi.multi_tenant and multi.tenant_id == "" and not multi.ignored_tenant_id
    ignored = Settings.from_env({**BASE, "TENANT_MODE": "multi", "GRAPH_TENANT_ID": A})
    assert ignored.tenant_id == "" and ignored.ignored_tenant_id


def test_a_multi_tenant_app_names_its_registration() -> None:
    environ = {k: v for k, v in BASE.items() if not k.startswith("GRAPH_CLIENT")} | {"TENANT_MODE": "multi"}
    with pytest.raises(MissingSettingError, match="GRAPH_CLIENT_ID"):
        Settings.from_env(environ)


def test_a_desired_entry_may_name_tenants_only_in_multi_mode() -> None:
    text = f'[{{"resource": "users", "changeType": "updated", "tenants": ["{A.upper()}"]}}]'
    (entry,) = parse_desired(text, multi=True)
    assert entry.tenants == frozenset({A})
    with pytest.raises(InvalidSettingError, match="TENANT_MODE=multi"):
        parse_desired(text)
    with pytest.raises(InvalidSettingError, match="tenant id"):
        parse_desired('[{"resource": "users", "tenants": ["contoso.com"]}]', multi=True)
    with pytest.raises(InvalidSettingError, match="list of tenant ids"):
        parse_desired('[{"resource": "users", "tenants": []}]', multi=True)
