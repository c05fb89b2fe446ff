"""Benchmarks: `make bench` (python -m bench). Every measurement runs in a fresh process for an honest peak memory."""
