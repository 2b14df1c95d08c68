"""SharePoint's own REST list webhooks, outside Graph: lists, the REST adapter, subscriptions.

Only ``lists`` is imported by settings and the HTTP path; the adapter loads the
SDKs (httpx, azure-identity) on first use.
"""
