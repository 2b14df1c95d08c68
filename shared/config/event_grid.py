"""EVENT_GRID_*: the partner topic Graph delivers ``"delivery": "eventGrid"`` subscriptions to."""

from __future__ import annotations

import re
from collections.abc import Mapping

from shared.config.environment import required
from shared.errors import InvalidSettingError
from shared.model.event_grid import PartnerTopic

# Azure's rules: a partner topic name is 3-50 letters, digits and hyphens; a resource group up to
# 90 of letters, digits, '_', '-', '.', '(' and ')'; a location a region name such as "westeurope".
_TOPIC = re.compile(r"^[A-Za-z0-9-]{3,50}$")
_GROUP = re.compile(r"^[\w\-.()]{1,90}$")
_LOCATION = re.compile(r"^[a-z0-9]{2,40}$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def check_topic_name(key: str, name: str, where: str = "") -> str:
    """A partner topic name, or InvalidSettingError naming ``key`` (and ``where`` in it)."""
    if not _TOPIC.match(name):
        raise InvalidSettingError(key, f"{where}a partner topic name is 3 to 50 letters, digits and hyphens")
    return name


def partner_topic(environ: Mapping[str, str], name: str | None = None) -> PartnerTopic:
    """The partner topic from EVENT_GRID_*, its name ``name`` when an entry overrides it.

    Read only when some entry uses the channel, so a missing one is named then and only then.
    """
    subscription = required(environ, "EVENT_GRID_AZURE_SUBSCRIPTION_ID")
    if not _GUID.match(subscription):
        raise InvalidSettingError("EVENT_GRID_AZURE_SUBSCRIPTION_ID", "must be an Azure subscription id (a GUID)")
    group = required(environ, "EVENT_GRID_RESOURCE_GROUP")
    if not _GROUP.match(group):
        raise InvalidSettingError("EVENT_GRID_RESOURCE_GROUP", "is not a resource group name")
    location = required(environ, "EVENT_GRID_LOCATION").lower().replace(" ", "")
    if not _LOCATION.match(location):
        raise InvalidSettingError("EVENT_GRID_LOCATION", "must be an Azure region name such as westeurope")
    topic = (
        name
        if name is not None
        else check_topic_name("EVENT_GRID_PARTNER_TOPIC", required(environ, "EVENT_GRID_PARTNER_TOPIC"))
    )
    return PartnerTopic(subscription.lower(), group, topic, location)
