"""The simulated world: drives, lists, mailboxes, the directory, Teams, SharePoint and subscriptions.

Data and what changes it, with no HTTP handler, and never importing the simulator's state:
each store tells its listeners of a change, and state.py turns that into notifications.
"""
