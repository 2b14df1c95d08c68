"""Fixtures of the functional tests: the in-process pipeline stack."""

from tests.functional.stacks import stack_factory

__all__ = ["stack_factory"]
