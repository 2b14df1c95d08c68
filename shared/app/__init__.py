"""The composition root: builds the adapters and policies from the settings, once per process.

The import stays cheap: SDKs load on first use, so a cold start can answer
Graph's handshake before any of them is imported.
"""
