"""Judge: each site's change, its class, the variants and the verdict against a claim.

Works on the zone-by-month table; never reads pixels, except :mod:`pipeline.judge.annual`, whose
interval needs the annual composites' pixel spread (``tests/test_architecture.py`` names it).
"""
