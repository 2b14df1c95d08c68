"""Many tenants in one deployment: onboarding, access, the per-tenant tick and offboarding."""
