"""Benchmarks (``make bench``): timing extraction against its peers; not tests."""
