"""A faithful local stand-in for Microsoft Graph (drives, delta, subscriptions, webhooks).

Graph cannot be reached from the development machines, so this package simulates the
parts the function app depends on: the Microsoft identity platform token endpoint
(over HTTPS, as azure-identity requires), ``/v1.0/subscriptions``, drive items and
``delta``, and change-notification delivery with Graph's retry behaviour.  The control
API (``/_sim``) seeds drives (up to a million generated items in seconds), moves, deletes
and restores items, and injects faults: failing requests, dropped, late or duplicated
notifications, and a delta that lags behind its notifications.

It serves many tenants (tenants.py): a token endpoint per tenant authority, each tenant's
own data and subscriptions picked by the Graph token's ``tid``, the admin consent endpoint
(consent.py), revoked consent and per-tenant 429 storms. Control routes take ``?tenant=``.

Run it with ``python -m devtools.graphsim`` or in-process with
:func:`devtools.graphsim.server.start`.
"""
