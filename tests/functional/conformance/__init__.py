"""The conformance kit: every registered change source keeps the promise, whatever fails.

Each kind of resource has a driver here (``kinds.py``) that knows how to make its
items change in the Graph simulator; the tests (``test_kit.py``) run the same
checks over every driver against a real Azurite and the simulator, through the
real HTTP path, queue and processor. A source that is registered in the app with
no driver here fails ``test_every_registered_source_has_a_driver``: a new kind
cannot be registered without passing the kit.
"""
