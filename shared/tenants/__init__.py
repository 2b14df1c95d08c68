"""Tenants of a multi-tenant deployment: onboarding by admin consent (and, later, access and removal)."""
