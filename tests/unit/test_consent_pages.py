"""What the consent routes answer: the admin consent URL, and pages that escape what they echo."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from shared.graph import graph_scope
from shared.refusals import Reason
from shared.tenants import pages
from shared.tenants.consent import ConsentRequest

TENANT = "fa00d692-e9c7-4460-a743-29f2956fd429"
CONSENT_REASONS = [reason for reason in Reason if reason.value.startswith("consent")]


def request(authority: str = "", base_url: str = "https://graph.microsoft.com/v1.0") -> ConsentRequest:
    return ConsentRequest(authority, "22222222-2222-2222-2222-222222222222", graph_scope(base_url), REDIRECT)


REDIRECT = "https://app.example.net/api/consent"


def test_the_url_is_the_v2_admin_consent_endpoint_for_any_organization_with_every_parameter():
    url = urlsplit(request().url("the.signed.state"))

    assert (url.scheme, url.netloc, url.path) == (
        "https",
        "login.microsoftonline.com",
        "/organizations/v2.0/adminconsent",
    )
    assert parse_qs(url.query, strict_parsing=True) == {
        "client_id": ["22222222-2222-2222-2222-222222222222"],
        "scope": ["https://graph.microsoft.com/.default"],
        "redirect_uri": [REDIRECT],
        "state": ["the.signed.state"],
    }


@pytest.mark.parametrize(
    ("authority", "base_url", "host", "scope"),
    [
        ("https://login.microsoftonline.us/", "https://graph.microsoft.us/v1.0", "login.microsoftonline.us",
         "https://graph.microsoft.us/.default"),
        # The simulator: a loopback Graph still asks for Graph's own scope, as the app's tokens do.
        ("https://127.0.0.1:8444", "http://127.0.0.1:8443/v1.0", "127.0.0.1:8444", "https://graph.microsoft.com/.default"),
    ],
)  # fmt: skip
def test_the_authority_and_scope_follow_the_cloud(authority, base_url, host, scope):
    url = urlsplit(request(authority, base_url).url("s"))

    assert url.netloc == host
    assert url.path == "/organizations/v2.0/adminconsent"
    assert parse_qs(url.query)["scope"] == [scope]


def test_the_redirect_carries_the_url_and_keeps_the_page_out_of_caches_and_referers():
    page = pages.redirect("https://login.microsoftonline.com/organizations/v2.0/adminconsent?state=s")

    assert page.status == 302
    assert page.headers["Location"].endswith("state=s")
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"


def test_the_connected_page_escapes_the_name():
    page = pages.connected(TENANT, '<script>alert("x")</script> & Co')

    assert page.status == 200
    assert page.mimetype == "text/html"
    assert "<script>" not in page.body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in page.body
    assert TENANT in page.body
    assert "is connected" in page.body
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]


def test_the_connected_page_without_a_name_names_the_tenant():
    assert f"Tenant {TENANT} is connected" in pages.connected(TENANT, "").body


@pytest.mark.parametrize("reason", CONSENT_REASONS, ids=lambda reason: reason.value)
def test_each_refusal_has_its_own_words(reason):
    page = pages.refused(reason)

    assert page.status == (409 if reason is Reason.CONSENT_TENANT_REMOVING else 400)
    assert pages.REFUSALS[reason] in page.body
    assert "Not connected" in page.body


def test_the_refusal_texts_are_distinct_and_cover_every_consent_reason():
    assert set(pages.REFUSALS) == set(CONSENT_REASONS)
    assert len(set(pages.REFUSALS.values())) == len(CONSENT_REASONS)


def test_the_expired_page_says_the_link_expired_and_to_start_again():
    body = pages.refused(Reason.CONSENT_EXPIRED_STATE).body
    assert "expired" in body
    assert "Start again" in body


def test_an_identity_platform_error_code_is_shown_only_in_its_documented_shape():
    assert "(Microsoft answered: access_denied.)" in pages.refused(Reason.CONSENT_DECLINED, "access_denied").body
    hostile = pages.refused(Reason.CONSENT_DECLINED, "<img src=x onerror=alert(1)>").body
    assert "<img" not in hostile
    assert "onerror" not in hostile


def test_single_mode_answers_404_in_plain_text():
    page = pages.not_found()
    assert (page.status, page.mimetype) == (404, "text/plain")
    assert "TENANT_MODE=single" in page.body
