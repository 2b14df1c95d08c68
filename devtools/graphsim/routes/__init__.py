"""The simulator's HTTP handlers: Graph under ``/v1.0``, SharePoint's REST API, the control API under ``/_sim``.

Each reads and changes the models through the simulator's state (state.py).
"""
