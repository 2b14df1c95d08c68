"""Change sources: one module per resource kind, each implementing the ChangeSource contract.

``contract`` holds the contract and the registry; ``catalog`` the resource patterns
settings check without importing any SDK; each other module reads one kind.
"""

from shared.model.changes import ChangeSource, Page, SourceChange, SourceRegistry

__all__ = ["ChangeSource", "Page", "SourceChange", "SourceRegistry"]
