"""Read: what the user brings, checked (sites, units, claims, raster folders, bounded YAML).

First of the flow read -> measure -> judge -> compare -> publish; imports none of the later
stages (``tests/test_architecture.py``).
"""
