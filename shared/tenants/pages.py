"""What the consent routes answer: a redirect, or a short HTML page for a customer's admin (pure).

The pages speak to an administrator of another organization, not to an operator: they say
what happened and what to do, and never show a state, a key or the identity platform's
``error_description`` (that goes to the log). Everything echoed is escaped. The headers keep
the page out of caches and frames, and keep its URL (which carries the state) out of the
Referer of anything it links to.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from shared.refusals import Reason

PAGE_HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    }
)
START_AGAIN = "Start again from the sign-up link you were given."
REFUSALS: Mapping[Reason, str] = MappingProxyType(
    {
        Reason.CONSENT_NO_STATE: "This link is incomplete: it lacks the sign-up reference this service issued. "
        + START_AGAIN,
        Reason.CONSENT_BAD_STATE: "This link was not issued by this service, or it was changed on its way. "
        + START_AGAIN,
        Reason.CONSENT_EXPIRED_STATE: "This sign-up link expired: a link is valid for one hour. " + START_AGAIN,
        Reason.CONSENT_REUSED_STATE: "This sign-up link was used already, and each link works once."
        " If your organization is not connected yet, start again from the sign-up link you were given.",
        Reason.CONSENT_DECLINED: "Consent was declined or did not complete, so your organization was not connected."
        " An administrator of your organization can start again and accept the permissions.",
        Reason.CONSENT_NOT_GRANTED: "Microsoft did not confirm that an administrator consented for your organization."
        " Start again and sign in as an administrator who can grant application permissions.",
        Reason.CONSENT_BAD_TENANT: "Microsoft's reply did not name your organization (its tenant id). " + START_AGAIN,
        Reason.CONSENT_TENANT_REMOVING: "Your organization is being disconnected from this service right now."
        " Try again in a few minutes, once that has finished.",
        Reason.CONSENT_BAD_NAME: "The name given for your organization cannot be used: it must be printable text"
        " of at most 256 characters. Ask for a new sign-up link.",
    }
)
# An identity platform error code is shown (it helps the admin's helpdesk), but only in this shape.
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class Page:
    """An HTTP answer, independent of any web framework."""

    status: int
    body: str = ""
    mimetype: str = "text/html"
    headers: Mapping[str, str] = field(default_factory=lambda: PAGE_HEADERS)


def redirect(url: str) -> Page:
    """302 to ``url`` (the identity platform's admin consent endpoint)."""
    return Page(302, "", "text/plain", {**PAGE_HEADERS, "Location": url})


def not_found() -> Page:
    """The answer in TENANT_MODE=single: there is no onboarding of other tenants."""
    return Page(404, "Not found: this deployment serves one tenant (TENANT_MODE=single).", "text/plain")


def connected(tenant_id: str, name: str) -> Page:
    """200: the tenant is registered and its subscriptions are on their way."""
    who = f"{_escape(name)} (tenant {_escape(tenant_id)})" if name else f"Tenant {_escape(tenant_id)}"
    return _page(
        200,
        "Connected",
        f"{who} is connected. Its change notifications start within a few minutes; you can close this page.",
    )


def refused(reason: Reason, error_code: str = "") -> Page:
    """400 with what went wrong, in words for a customer's admin; 409 while the tenant is being removed."""
    text = REFUSALS.get(reason, START_AGAIN)
    if error_code and _ERROR_CODE.fullmatch(error_code):
        text += f" (Microsoft answered: {_escape(error_code)}.)"
    status = 409 if reason is Reason.CONSENT_TENANT_REMOVING else 400
    return _page(status, "Not connected", text)


def unavailable() -> Page:
    """503: storage failed, nothing is known to be registered."""
    return _page(
        503,
        "Please try again",
        "This service could not record the connection just now. Wait a minute, then "
        + START_AGAIN[0].lower()
        + START_AGAIN[1:],
    )


def _page(status: int, title: str, text: str) -> Page:
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_escape(title)}</title></head>"
        f'<body style="font-family:sans-serif;max-width:40em;margin:3em auto">'
        f"<h1>{_escape(title)}</h1><p>{text}</p></body></html>"
    )
    return Page(status, body)


def _escape(text: str) -> str:
    return html.escape(text, quote=True)
