"""nightlights: did these places get brighter or dimmer?

Monthly VIIRS night-light rasters are clipped to site polygons with exact coverage
weights, aggregated into year-over-year change, classified brightened / unchanged /
dimmed / insufficient_data, and set against a published claim.

Stages, one module each: :mod:`pipeline.read.sites` (read site GeoJSON),
:mod:`pipeline.read.sources` (find monthly rasters), :mod:`pipeline.measure.zonal` (site-by-month
table), :mod:`pipeline.judge.change` (yearly change and classes), :mod:`pipeline.judge.verdict`
(counts against the claim), :mod:`pipeline.outputs` (atomic writing).

Python API: :func:`analyse` (site files in, :class:`Results` out), :func:`load_results`
(an output folder back into Results); see docs/python.md.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Params", "Results", "__version__", "analyse", "load_results", "read_sites"]

# The API is imported on first use (PEP 562), so `nightlights --help` and `import pipeline`
# stay fast: nothing heavy (geopandas, rasterio, dask) loads until a name below is touched.
_LAZY = {
    "analyse": "pipeline.api",
    "Results": "pipeline.results",
    "load_results": "pipeline.results",
    "Params": "pipeline.config",
    "read_sites": "pipeline.read.sites",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
