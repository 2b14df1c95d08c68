"""Config: the environment in, frozen values out. Imports only the domain layer (shared/model)."""
