"""Measure: pixels into zone-by-month numbers (coverage weights, the study cube, dask extraction).

Reads rasters through :mod:`pipeline.read.sources`; never judges, compares or publishes
(``tests/test_architecture.py``).
"""
