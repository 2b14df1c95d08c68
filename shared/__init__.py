"""The function app's logic: pure decisions beside the adapters that do I/O."""
