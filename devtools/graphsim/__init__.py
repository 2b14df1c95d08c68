"""A faithful local stand-in for Microsoft Graph (drives, delta, subscriptions, webhooks).

Graph cannot be reached from the development machines, so this package simulates the
parts the function app depends on: the Microsoft identity platform token endpoint
(over HTTPS, as azure-identity requires), ``/v1.0/subscriptions``, drive items and
``delta``, and change-notification delivery with Graph's retry behaviour.

Run it with ``python -m devtools.graphsim`` or in-process with
:func:`devtools.graphsim.server.start`.
"""
