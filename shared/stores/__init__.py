"""The table-backed stores: subscription records, delta cursors and the item index.

Each store owns its table and the state types kept in it; clients are passed in.
"""
