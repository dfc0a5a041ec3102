"""Throughput and latency of dapr-workflows against durabletask's in-memory backend, in one run.

`python -m benchmarks.run --help`; see benchmarks/README.md.
"""
