"""A local Azure Functions host for v2 Python apps (HTTP, queue and timer triggers).

Run `python -m devtools.host --help`. It stands in for `func start`, which cannot be
installed here, and follows the real host's semantics where they matter to the app.
"""
