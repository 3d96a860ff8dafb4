"""The demo world: the one synthetic world that ``--source demo`` reads, whatever the run.

SYNTHETIC DATA. Nothing made from it is evidence about North Korea.

Inputs
    :data:`WORLD_FILE` (``demo_world.json``: seed, bounds, years, the shipped sites with their
    batch labels and planted time line, the cohorts) and :data:`WORLD_UNITS` (the shipped counties,
    simplified), both beside this module and frozen from the project's files by :func:`freeze_world`.
Outputs
    :class:`World`: a :class:`pipeline.fetch.demo.DemoSpec` for any years within the world's span.

Why frozen: a demo generated from the run's own sites moved whenever a site was added or a flag
changed; a frozen world gives the same sites the same numbers in every run, and a site added
later reads whatever the world holds there.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.fetch.demo import GENERATOR_VERSION, DemoSpec, month_number, month_text

WORLD_FILE = Path(__file__).with_name("demo_world.json")
WORLD_UNITS = Path(__file__).with_name("demo_counties.geojson")


@dataclass(frozen=True)
class World:
    """The one synthetic world the demo source reads: fixed sites, counties and time line."""

    spec: DemoSpec
    first_year: int
    last_year: int

    def check_years(self, years: Sequence[int]) -> None:
        from pipeline.errors import ConfigError

        bad = [y for y in years if not self.first_year <= y <= self.last_year]
        if bad:
            raise ConfigError(
                f"the synthetic demo covers {self.first_year} to {self.last_year}; "
                f"{', '.join(map(str, sorted(set(bad))))} asked for (choose years within it, or use "
                "real data: README 'Real data')"
            )

    def spec_for(self, years: Sequence[int]) -> DemoSpec:
        self.check_years(years)
        return dataclasses.replace(self.spec, years=tuple(sorted(set(years))))


@functools.cache
def load_world() -> World:
    """The world of :data:`WORLD_FILE`: the sites shipped in ``aoi/`` when it was frozen
    (:func:`freeze_world`), the shipped counties, each site's change from the month after its
    inauguration and each cohort's effect from the month after its last one. Independent of the
    site files, claim, flags or command of a run: a site added later reads what the world holds."""
    w = json.loads(WORLD_FILE.read_text(encoding="utf-8"))
    sites = w["sites"]
    spec = DemoSpec(
        seed=int(w["seed"]),
        bounds=tuple(w["bounds"]),
        target_year=int(w["target_year"]),
        sites=tuple((s["site_id"], float(s["lon"]), float(s["lat"])) for s in sites),
        comparison=True,
        units_file=str(WORLD_UNITS),
        inaugurations=tuple(
            (s["site_id"], s["inauguration"]) for s in sites if s.get("inauguration")
        ),
        change_from=tuple((s["site_id"], month_number(s["change_from"])) for s in sites),
        cohorts=tuple(
            (c["batch"], month_number(c["from_month"]), tuple(c["units"])) for c in w["cohorts"]
        ),
    )
    return World(spec, int(w["first_year"]), int(w["last_year"]))


def freeze_world(root: Path, first_year: int = 2013, last_year: int = 2027) -> dict[str, object]:
    """Write :data:`WORLD_FILE` and :data:`WORLD_UNITS` from the project's shipped files (a
    maintainer's step when the shipped sites or counties change; bump ``GENERATOR_VERSION`` too).
    ``tests/test_world.py`` fails while they disagree."""
    world, units = world_from_project(root, first_year, last_year)
    WORLD_FILE.write_text(json.dumps(world, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    WORLD_UNITS.write_text(units, encoding="utf-8")
    return world


def world_from_project(
    root: Path, first_year: int = 2013, last_year: int = 2027
) -> tuple[dict[str, object], str]:
    """The world (as :data:`WORLD_FILE` holds it) and the simplified counties (GeoJSON text) that the
    project's ``aoi/`` files give.

    A site's change starts the month after its inauguration (or ``inauguration_by``); a site with
    neither starts in January of the year after its groundbreaking (the 2025 batch
    opened ten months after breaking ground), else in January of ``last_year``. A cohort (a batch
    label) is treated from the month after its last site's start."""
    from pipeline.read.sites import batch_labels, read_sites, site_date
    from pipeline.read.units import assign_units, read_units

    sites = read_sites(sorted((root / "aoi").glob("sites_*.geojson")), 2000.0)
    counties = read_units(root / "aoi" / "boundaries" / "prk_adm2.geojson")
    sites = assign_units(sites, counties)
    rows = []
    for r, label in zip(sites.itertuples(), batch_labels(sites), strict=True):
        dated = site_date(r.inauguration)
        opened = dated or site_date(getattr(r, "inauguration_by", None))
        ground = site_date(r.groundbreaking)
        if opened:
            start = month_number(f"{opened[1]:%Y-%m}") + 1
        elif ground:
            start = (ground[0].year + 1) * 12
        else:
            start = last_year * 12
        rows.append(
            {
                "site_id": r.site_id,
                "lon": float(r.center_lon),
                "lat": float(r.center_lat),
                "batch": label,
                "inauguration": f"{dated[0]:%Y-%m}" if dated else None,
                "change_from": month_text(start),
                "county_id": r.county_id,
            }
        )
    cohorts = []
    for label in sorted({r["batch"] for r in rows if r["batch"]}):
        mine = [r for r in rows if r["batch"] == label]
        cohorts.append(
            {
                "batch": label,
                "from_month": max(r["change_from"] for r in mine),
                "units": sorted({r["county_id"] for r in mine if isinstance(r["county_id"], str)}),
            }
        )
    world = {
        "note": "SYNTHETIC demo world (pipeline.fetch.world.freeze_world); not observations",
        "generator": GENERATOR_VERSION,
        "seed": 2024,
        "bounds": [123.8, 37.4, 131.0, 43.3],
        "target_year": 2025,
        "first_year": first_year,
        "last_year": last_year,
        "sites": [{k: v for k, v in r.items() if k != "county_id"} for r in rows],
        "cohorts": cohorts,
    }
    simple = counties[["unit_id", "name", "geometry"]].copy()
    simple["geometry"] = simple.geometry.simplify(0.002)
    return world, re.sub(r"(\d+\.\d{4})\d+", r"\1", simple.to_json(drop_id=True)) + "\n"
