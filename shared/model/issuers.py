"""Whose validation tokens are accepted: the issuers Microsoft Entra ID writes, per tenant."""

from __future__ import annotations

# The v1 and v2 issuers of the tenant the app serves; ``{tenant}`` is its id.
DEFAULT_ISSUERS: tuple[str, ...] = (
    "https://sts.windows.net/{tenant}/",
    "https://login.microsoftonline.com/{tenant}/v2.0",
)
