"""Benchmarks: figures against the issue's goals, measured against same-run baselines.

Run with ``python -m bench`` (``make bench``); see ``python -m bench --help``.
"""
