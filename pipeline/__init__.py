"""nightlights: did these places get brighter or dimmer?

Monthly VIIRS night-light rasters are clipped to site polygons with exact coverage
weights, aggregated into year-over-year change, classified brightened / unchanged /
dimmed / insufficient_data, and set against a published claim.

Stages, one module each: :mod:`pipeline.sites` (read site GeoJSON),
:mod:`pipeline.sources` (find monthly rasters), :mod:`pipeline.zonal` (site-by-month
table), :mod:`pipeline.change` (yearly change and classes), :mod:`pipeline.verdict`
(counts against the claim), :mod:`pipeline.outputs` (atomic writing).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
