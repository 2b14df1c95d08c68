"""Maximum subscription lifetimes per resource type, and renewal arithmetic (pure).

The table follows Graph's subscription resource documentation
(api-reference/v1.0/resources/subscription.md, "Subscription lifetime").
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

MINIMUM_LIFETIME = timedelta(minutes=45)
# Graph rejects an expiry past the maximum; stay clear of clock skew between us and Graph.
SAFETY_MARGIN = timedelta(minutes=5)

_RULES: tuple[tuple[re.Pattern[str], int, int | None], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), minutes, with_data)
    for pattern, minutes, with_data in (
        # (resource pattern, max minutes, max minutes with resource data)
        (r"^(drives/[^/]+|(users|groups|sites)/[^/]+/drive|me/drive)/root$", 42300, None),
        # SharePoint's own list webhooks: 180 days (sp-dev-docs, overview-sharepoint-webhooks).
        (r"^https?://.*/_api/web/lists\('[^']+'\)$", 259200, None),
        (r"^sites/[^/]+/lists/[^/]+$", 42300, None),
        (r"^communications/presences", 60, None),
        (r"^security/alerts", 43200, None),
        (r"^communications/callRecords", 4230, None),
        (r"^print/", 4230, None),
        (r"/todo/lists/[^/]+/tasks$", 4230, None),
        (r"^groups/[^/]+/(conversations|threads)", 4230, None),
        (r"^(chats|teams|appCatalogs/teamsApps)|getAllMessages|getAllChatMessages", 4320, None),
        (r"(messages|events|contacts)(\?|$)", 10080, 1440),
        (r"^(users|groups|directory|devices|contacts|servicePrincipals)", 41760, None),
    )
)
_DEFAULT_MINUTES = 4230


def max_lifetime(resource: str, include_resource_data: bool = False) -> timedelta:
    """The longest a subscription on ``resource`` may live, per Graph's documentation."""
    path = resource.strip().lstrip("/")
    for pattern, minutes, with_data in _RULES:
        if pattern.search(path):
            if include_resource_data and with_data is not None:
                return timedelta(minutes=with_data)
            return timedelta(minutes=minutes)
    # Unknown resources get the shortest common maximum, which Graph accepts for all.
    return timedelta(minutes=_DEFAULT_MINUTES)


def next_expiry(resource: str, now: datetime, include_resource_data: bool = False) -> datetime:
    """The expiry to ask for when creating or renewing: as far out as Graph allows."""
    lifetime = max(max_lifetime(resource, include_resource_data) - SAFETY_MARGIN, MINIMUM_LIFETIME)
    return now + lifetime


def renewal_due(resource: str, expires_at: datetime, now: datetime, include_resource_data: bool = False) -> bool:
    """True once half of the resource's maximum lifetime has elapsed (or it has expired).

    Half the lifetime leaves many timer ticks of slack for retries before expiry.
    """
    return expires_at - now <= max_lifetime(resource, include_resource_data) / 2
