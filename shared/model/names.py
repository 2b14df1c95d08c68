"""The queues and tables the app keeps: each name defined once, here."""

from __future__ import annotations

# Queues. graph-changes is the event contract; consumers read it.
NOTIFICATIONS_QUEUE = "graph-notifications"
CHANGES_QUEUE = "graph-changes"

# host.json's extensions.queues.maxDequeueCount: the attempt after which the host poisons a message.
MAX_DEQUEUE_COUNT = 5

# Tables.
SUBSCRIPTIONS_TABLE = "subscriptions"
CURSORS_TABLE = "deltacursors"
ITEMS_TABLE = "deltaitems"
MEMBERS_TABLE = "membersets"
SOURCE_STATE_TABLE = "sourcestate"
DESIRED_TABLE = "desiredsubscriptions"
REFUSALS_TABLE = "refusals"
TAPS_TABLE = "taps"
TENANTS_TABLE = "tenants"
# The key admin consent states are signed with, and the states already redeemed.
CONSENT_STATE_TABLE = "consentstate"
SINK_BATCHES_TABLE = "sinkbatches"
SINK_MIRROR_TABLE = "sinkmirror"
SINK_ORDER_TABLE = "sinkorder"
