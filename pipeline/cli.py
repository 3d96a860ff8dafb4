"""Command line: parse options, call one function, report. No analysis here.

    nightlights run [--sites PATH]... [--source auto|demo|local|eog|blackmarble] [--rasters DIR]
                    [--claim FILE.yaml] [--baseline-year Y] [--target-year Y] [--out DIR] [--lang en,ko]
    nightlights compare [--units PATH] [--sites PATH...] [--batch B] [--source ...] [--rasters DIR]
                        [--baseline-year Y] [--target-year Y] [--out DIR]
    nightlights extract --sites PATH... --rasters DIR --out FILE.csv
    nightlights sites validate PATH...  (site .geojson files and claim .yaml files)
    nightlights download --source eog|blackmarble [--product monthly|annual] --start YYYY-MM --end YYYY-MM
                         [--bbox W S E N | --sites PATH...]
    nightlights figures [--out DIR] [--format png,svg,pdf] [--dpi 300] [--style paper|slide]
                        [--width-mm 183] [--lang en|ko|en,ko]

Every subcommand is defined here, so ``--help`` shows the whole contract. Only the
standard library, :mod:`pipeline.config` and :mod:`pipeline.errors` are imported at start
(``nightlights --help`` stays fast); each command imports what it needs when it runs, and
a dependency that fails to import is one error line for that command. Longer than most
modules because the contract (every flag and its help) is kept in one place.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from pipeline import __version__
from pipeline.config import (
    CHART_DPI,
    CHART_FORMATS,
    CHART_KINDS,
    CHART_WIDTH_MM,
    DOWNLOAD_SOURCES,
    EOG_CONFIGS,
    LANGS,
    PIXEL_RULES,
    PRODUCTS,
    SOURCES,
    STATISTICS,
    Params,
    load_user_config,
    params_from_mapping,
    read_yaml,
)
from pipeline.errors import ConfigError, NightlightsError

log = logging.getLogger("nightlights")
# ANSI escape sequences, then any other control character (C0 but tab and newline, DEL, C1) and the
# bidirectional overrides: names from input files never move the cursor, recolour or retitle a terminal
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def inert(text: str) -> str:
    """``text`` without terminal control sequences (what a file or site name may carry)."""
    return _CONTROL.sub("", _ANSI.sub("", text))


class _InertFormatter(logging.Formatter):
    """Every log line reaches the terminal without control characters (they come from inputs)."""

    def format(self, record: logging.LogRecord) -> str:
        return inert(super().format(record))


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line too, pointing at --help instead of printing the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, inert(f"{self.prog}: error: {message} (see '{self.prog} --help')") + "\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="nightlights",
        formatter_class=_formatter,
        description="Did these places get brighter or dimmer? Year-over-year VIIRS night-light change "
        "for site polygons, set against a published claim.",
        epilog="Examples:\n  nightlights run                      # demo data unless credentials are set\n"
        "  nightlights run --source local --rasters data/my_months --sites aoi/sites_2024.geojson\n"
        "  nightlights sites validate aoi/*.geojson\n\nRun 'nightlights COMMAND --help' for details.",
    )
    p.add_argument("--version", action="version", version=f"nightlights {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a flag given before a nested command ("sites --debug validate") is not reset by
    # the nested parser's own default
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks and debug logs",
    )
    common.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no progress bars, warnings only",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (
        _add_run,
        _add_compare,
        _add_extract,
        _add_sites,
        _add_download,
        _add_figures,
        _add_cache,
    ):
        add(sub, common)
    return p


def _analysis_options(sp: argparse.ArgumentParser, change: bool = True) -> None:
    """Method flags; ``extract`` takes only those that shape the site-by-month table."""
    g = sp.add_argument_group("method (defaults: see README 'Method')")
    if change:
        g.add_argument(
            "--baseline-year", type=int, metavar="Y", help="year compared against (default 2024)"
        )
        g.add_argument(
            "--target-year",
            type=int,
            metavar="Y",
            help="year whose change is measured (default 2025)",
        )
        g.add_argument(
            "--threshold",
            type=float,
            metavar="D",
            help="|ln ratio| that counts as change (default 0.25, i.e. +28%% / -22%%)",
        )
        g.add_argument(
            "--statistic",
            choices=STATISTICS,
            help="yearly statistic: median, mean or sol (sum of lights); default median",
        )
    g.add_argument(
        "--radius",
        type=float,
        metavar="M",
        dest="default_radius_m",
        help="buffer in metres for every point site, overriding radius_m in the files "
        "(default: radius_m, else 2000)",
    )
    g.add_argument("--pixel-rule", choices=PIXEL_RULES, help="pixel inclusion (default exact)")
    g.add_argument(
        "--min-cf-cvg",
        type=int,
        metavar="N",
        help="EOG: minimum cloud-free observations (default 3)",
    )
    g.add_argument(
        "--config",
        type=Path,
        metavar="FILE.yaml",
        help="YAML file of parameters (keys as in README)",
    )


def _add_run(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sp = sub.add_parser(
        "run",
        parents=[common],
        formatter_class=_formatter,
        help="the whole analysis",
        description=textwrap.dedent("""\
            The whole analysis: sites -> monthly rasters -> site-by-month table -> yearly change
            -> classes -> verdict against the claim, with tables and charts in --out.

            Source 'auto' (default) uses EOG when EOG credentials are configured, Black Marble
            when an Earthdata token is, and otherwise the synthetic demo, saying so."""),
        epilog=textwrap.dedent("""\
            Examples:
              nightlights run
              nightlights run --source local --rasters ~/viirs/monthly --sites a.geojson --sites b.geojson
              nightlights run --source eog --baseline-year 2024 --target-year 2025 --out results/
              nightlights run --lang en   (the English report alone, without report.ko.html)"""),
    )
    _study_options(sp, "tables and verdict only")
    sp.add_argument(
        "--product",
        choices=PRODUCTS,
        help="monthly composites (default) or annual ones (EOG VNL v2, Black Marble VNP46A4)",
    )
    sp.add_argument(
        "--claim",
        type=Path,
        metavar="FILE.yaml",
        help="claim to judge (README 'The claim'; default: claims/joongang-2026-02-03.yaml); its "
        "n_sites must match the run's sites of its batch; its years are the run's unless given",
    )
    sp.add_argument(
        "--no-sensitivity",
        action="store_true",
        help="skip the method-variant grid and the calibration controls (faster)",
    )
    sp.add_argument(
        "--no-compare",
        action="store_true",
        help="skip the county comparison (otherwise made whenever aoi/boundaries covers the sites)",
    )
    sp.add_argument(
        "--lang",
        type=_langs,
        default=LANGS,
        metavar="LIST",
        help="languages of the reports and charts (default en,ko): report.html with figures/ in "
        "English, report.ko.html with figures/ko/ in Korean, each linking to the other; the first "
        "language's charts in PNG, SVG and PDF, the others' in PNG (what their report shows; "
        "'nightlights figures --lang ko --format ...' draws more)",
    )
    sp.set_defaults(func=cmd_run)


def _langs(text: str) -> tuple[str, ...]:
    """``en``, ``ko``, ``en,ko``...: languages in the order given, each once."""
    chosen = tuple(x.strip().lower() for x in text.split(",") if x.strip())
    bad = [x for x in chosen if x not in LANGS]
    if bad or not chosen or len(set(chosen)) < len(chosen):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give languages among {', '.join(LANGS)}, comma-separated, each once"
        )
    return chosen


def _study_options(sp: argparse.ArgumentParser, no_figures_help: str) -> None:
    """The options every study command shares (run, compare): inputs, outputs, caches, method."""
    sp.add_argument(
        "--sites",
        action="extend",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="site GeoJSON file(s) (repeatable; default: every aoi/*.geojson)",
    )
    sp.add_argument(
        "--source", choices=SOURCES, default="auto", help="where the monthly rasters come from"
    )
    sp.add_argument(
        "--rasters", type=Path, metavar="DIR", help="folder of monthly rasters (--source local)"
    )
    sp.add_argument(
        "--out",
        type=Path,
        default=Path("outputs"),
        metavar="DIR",
        help="output folder (default outputs/)",
    )
    sp.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data"),
        metavar="DIR",
        help="where downloads and the demo are cached (default data/)",
    )
    sp.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="cache of the study cube and of each stage's results, so a re-run takes seconds "
        "(default <data-dir>/cache); 'none' reads the monthly files and computes everything afresh",
    )
    sp.add_argument(
        "--eog-config",
        choices=EOG_CONFIGS,
        help="EOG configuration to download and read (default vcmslcfg: stray-light corrected)",
    )
    sp.add_argument("--no-figures", action="store_true", help=no_figures_help)
    _jobs_option(sp)
    sp.add_argument(
        "--scheduler", metavar="ADDRESS", help="dask.distributed scheduler (e.g. tcp://host:8786)"
    )
    _analysis_options(sp)
    _compare_start_option(sp)


def _jobs_option(sp: argparse._ActionsContainer) -> None:
    sp.add_argument(
        "--jobs",
        type=_positive_int,
        metavar="N",
        help="processes drawing charts (default: $NIGHTLIGHTS_JOBS, else one per core; 1: none)",
    )


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of processes, 1 or more")
    return n


def _compare_start_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--compare-start-year",
        type=int,
        metavar="Y",
        help="first year of the county panel, for pre-trend placebos (default baseline year - 4); "
        "each year before the baseline is 12 more months to read and, with --source "
        "eog/blackmarble, to download: about 3.3-5.4 GB a year from EOG, 1.4-2.4 GB from "
        "Black Marble (the cropped cache keeps a few MB a month); 'run --no-compare' needs "
        "none of them",
    )


def _add_compare(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sp = sub.add_parser(
        "compare",
        parents=[common],
        formatter_class=_formatter,
        help="designated vs other counties",
        description=textwrap.dedent("""\
            Did the units (counties) holding a site of the batch change differently from the units
            holding none? Writes unit_years.csv, unit_months.parquet, did.json (difference-in-differences
            with randomization inference, without Pyongyang, pre-trend placebos, the site-level
            "k of n brightened" placebo), spillover.csv (rings 0-5, 5-10, 10-20 km), event_study.csv
            (months around each inauguration) and disparity.csv (Gini, Theil, top share by year),
            with their charts, into --out. Same extraction as 'run'."""),
        epilog=textwrap.dedent("""\
            Examples:
              nightlights compare
              nightlights compare --units aoi/boundaries/prk_adm2.geojson --sites aoi/sites_2024.geojson --batch 2024
              nightlights compare --source local --rasters ~/viirs/monthly --compare-start-year 2018"""),
    )
    _study_options(sp, "tables only")
    sp.add_argument(
        "--units",
        type=Path,
        metavar="PATH",
        help="unit polygons with unit_id (default: aoi/boundaries/prk_adm2.geojson, 181 DPRK counties)",
    )
    sp.add_argument(
        "--claim",
        type=Path,
        metavar="FILE.yaml",
        help="claim whose batch and years the comparison takes (default: "
        "claims/joongang-2026-02-03.yaml); --batch and the year flags override it",
    )
    sp.add_argument(
        "--batch",
        metavar="LABEL",
        help="the designated batch: a label as in the site files' 'batch' (a year such as 2024, or "
        "any text such as pilot); default: the claim's batch (2024)",
    )
    sp.set_defaults(func=cmd_compare)


def _add_extract(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sp = sub.add_parser(
        "extract",
        parents=[common],
        formatter_class=_formatter,
        help="only the site-by-month table",
        description="Only the site-by-month table: exact coverage-weighted radiance of each site in each month.",
        epilog="Example:\n  nightlights extract --sites aoi/sites_2024.geojson --rasters data/eog --out site_months.csv",
    )
    sp.add_argument(
        "--sites",
        action="extend",
        type=Path,
        metavar="PATH",
        required=True,
        nargs="+",
        help="site GeoJSON file(s) (repeatable)",
    )
    sp.add_argument(
        "--rasters", type=Path, metavar="DIR", required=True, help="folder of monthly rasters"
    )
    sp.add_argument("--out", type=Path, metavar="FILE.csv", required=True, help="output CSV")
    sp.add_argument("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler address")
    sp.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="build and reuse a study cube here (fast re-runs); default: read the files directly",
    )
    _analysis_options(sp, change=False)
    sp.set_defaults(func=cmd_extract)


def _add_sites(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sp = sub.add_parser(
        "sites",
        parents=[common],
        formatter_class=_formatter,
        help="site file tools",
        description="Site file tools.",
        epilog="Example:\n  nightlights sites validate aoi/*.geojson",
    )
    ssub = sp.add_subparsers(dest="sites_command", metavar="ACTION")
    ssub.required = True
    v = ssub.add_parser(
        "validate",
        parents=[common],
        formatter_class=_formatter,
        help="check site and claim files, explain every problem",
        description="Check site GeoJSON files and claim .yaml files and print one line per problem (file, "
        "feature, what to do); a claim given with site files is also checked against their sites "
        "of its batch. Exit 0 when usable (warnings allowed), 1 when any error.",
        epilog="Example:\n  nightlights sites validate aoi/sites_2024.geojson my_sites.geojson\n"
        "  nightlights sites validate aoi/*.geojson claims/my_claim.yaml",
    )
    v.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    v.add_argument(
        "--radius",
        type=float,
        default=Params().default_radius_m,
        dest="default_radius_m",
        metavar="M",
        help="buffer in metres for point sites",
    )
    v.set_defaults(func=cmd_sites_validate)


def _add_download(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sp = sub.add_parser(
        "download",
        parents=[common],
        formatter_class=_formatter,
        help="fetch and cache real monthly data",
        description=textwrap.dedent("""\
            Fetch EOG VNL monthly v10 or NASA Black Marble VNP46A3 months for an area, verify
            them and cache cropped GeoTIFFs under --data-dir (plus data/manifest.json with
            source URL, size and sha256). Months already cached are not fetched again; an
            interrupted download resumes; months not yet published are skipped with a warning.

            Credentials (environment or the user config's 'data:' section; README 'Real data'):
              EOG           EOG_TOKEN, or EOG_CLIENT_ID, EOG_CLIENT_SECRET, EOG_USERNAME, EOG_PASSWORD
              Black Marble  EARTHDATA_TOKEN
            Mirrors: NIGHTLIGHTS_EOG_URL, NIGHTLIGHTS_EOG_TOKEN_URL, NIGHTLIGHTS_LAADS_URL."""),
        epilog="Examples:\n  nightlights download --source eog --start 2023-01 --end 2025-12\n"
        "  nightlights download --source blackmarble --start 2024-01 --end 2024-12 "
        "--bbox 124 37.5 131 43\n  nightlights download --source eog --sites aoi/sites_2024.geojson "
        "--start 2025-01 --end 2025-06 --eog-config vcmcfg",
    )
    sp.add_argument("--source", choices=DOWNLOAD_SOURCES, required=True, help="which provider")
    sp.add_argument(
        "--product",
        choices=PRODUCTS,
        default=PRODUCTS[0],
        help="monthly (EOG VNL v10, VNP46A3; default) or annual (EOG VNL v2, VNP46A4) composites",
    )
    sp.add_argument("--start", required=True, metavar="YYYY-MM", help="first month (annual: YYYY)")
    sp.add_argument(
        "--end", required=True, metavar="YYYY-MM", help="last month, inclusive (annual: YYYY)"
    )
    area = sp.add_mutually_exclusive_group()
    area.add_argument(
        "--bbox",
        nargs=4,
        type=float,
        metavar=("W", "S", "E", "N"),
        help="area in degrees (default: the sites' box padded by 0.15 deg)",
    )
    area.add_argument(
        "--sites",
        action="extend",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="site GeoJSON (repeatable; default: every aoi/*.geojson, else lon 124-131, lat 37.5-43)",
    )
    sp.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data"),
        metavar="DIR",
        help="cache folder (default data/)",
    )
    sp.add_argument(
        "--eog-config",
        choices=EOG_CONFIGS,
        default=EOG_CONFIGS[0],
        help="EOG configuration (default vcmslcfg: stray-light corrected)",
    )
    sp.add_argument(
        "--no-refresh",
        action="store_true",
        help="trust cached months without asking the archive whether they were republished "
        "(by default one listing request per cached month notices a reprocessed file)",
    )
    sp.set_defaults(func=cmd_download)


def _add_figures(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sp = sub.add_parser(
        "figures",
        parents=[common],
        formatter_class=_formatter,
        help="re-make charts and report from an output folder",
        description="Re-make the charts, report.html/report.md (report.ko.html/report.ko.md with --lang ko), "
        "explore.html and GIS files from the output folder of an earlier "
        "'nightlights run' (verdict.json, site_changes.csv, ...). The monthly rasters are found "
        "through the folders named in verdict.json.",
        epilog="Examples:\n  nightlights figures --out outputs\n"
        "  nightlights figures --out outputs --format pdf --width-mm 89 --style paper\n"
        "  nightlights figures --out outputs --lang ko --style slide --dpi 200\n"
        "  nightlights figures --out outputs --lang en,ko --format png,svg",
    )
    g = sp.add_argument_group("charts")
    g.add_argument(
        "--format",
        default=",".join(CHART_FORMATS),
        metavar="LIST",
        help="comma-separated formats among png,svg,pdf (default all three)",
    )
    g.add_argument(
        "--dpi", type=int, default=CHART_DPI, help=f"PNG resolution (default {CHART_DPI})"
    )
    g.add_argument(
        "--style", choices=CHART_KINDS, default=CHART_KINDS[0], help="font sizes (default paper)"
    )
    g.add_argument(
        "--width-mm",
        type=float,
        default=CHART_WIDTH_MM,
        metavar="MM",
        help=f"chart width, e.g. 89 (one journal column) or 183 (two) (default {CHART_WIDTH_MM:g})",
    )
    g.add_argument(
        "--lang",
        type=_langs,
        default=LANGS[:1],
        metavar="LIST",
        help="language(s) of the charts and the report (default en: figures/ and report.html/"
        "report.md; ko: figures/ko/ and report.ko.html/report.ko.md, leaving the English ones as "
        "they are; en,ko: both), every chart in every --format",
    )
    _jobs_option(g)
    sp.add_argument(
        "--out",
        type=Path,
        default=Path("outputs"),
        metavar="DIR",
        help="output folder of an earlier run (default outputs/)",
    )
    sp.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data"),
        metavar="DIR",
        help="where input checksums are cached, if it exists (default data/)",
    )
    sp.set_defaults(func=cmd_figures)


def _add_cache(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sp = sub.add_parser(
        "cache",
        parents=[common],
        formatter_class=_formatter,
        help="cache housekeeping",
        description="Cache housekeeping.",
        epilog="Example:\n  nightlights cache prune --data-dir data",
    )
    ssub = sp.add_subparsers(dest="cache_command", metavar="ACTION")
    ssub.required = True
    pr = ssub.add_parser(
        "prune",
        parents=[common],
        formatter_class=_formatter,
        help="remove study cubes and kept results no run can use again",
        description="Remove the study cubes and the kept stage results (<cache-dir>/results) whose input "
        "rasters no longer exist or have changed, and those of an older layout; print how much space "
        "that freed. Cubes in use are kept. Kept results are also capped at the 32 most recently used "
        "of each stage as runs go.",
        epilog="Examples:\n  nightlights cache prune\n  nightlights cache prune --cache-dir /shared/nightlights-cache",
    )
    pr.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data"),
        metavar="DIR",
        help="data folder whose cache to prune (default data/)",
    )
    pr.add_argument(
        "--cache-dir", type=Path, metavar="DIR", help="cache folder (default <data-dir>/cache)"
    )
    pr.set_defaults(func=cmd_cache_prune)


# --------------------------------------------------------------------------- helpers


def params_from_args(args: argparse.Namespace, claim=None) -> Params:
    """Defaults < the claim's years < user config 'analysis:' < --config file < flags: the claim's
    two years are the run's unless the user gives years."""
    params = Params()
    if claim is not None:
        from pipeline.study import claim_years

        params = claim_years(claim, params)
    analysis = _section(load_user_config().get("analysis"), "user config 'analysis'")
    if analysis:
        params = params_from_mapping(analysis, "user config 'analysis'", params)
    if getattr(args, "config", None):
        data = read_yaml(args.config)
        section = _section(data.get("analysis", data), f"{args.config}: 'analysis'")
        params = params_from_mapping(section, str(args.config), params)
    flags = {
        k: getattr(args, k, None)
        for k in (
            "baseline_year",
            "target_year",
            "threshold",
            "statistic",
            "default_radius_m",
            "pixel_rule",
            "min_cf_cvg",
            "eog_config",
            "product",
            "compare_start_year",
        )
    }
    return params_from_mapping(
        {k: v for k, v in flags.items() if v is not None}, "command line", params
    )


def _section(value: object, origin: str) -> dict:
    """A config section as a mapping: empty when left blank, an error when a list or value."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(
            f"{origin} must be a mapping of parameter: value, found {type(value).__name__}"
        )
    return value


def default_site_files() -> list[Path]:
    return sorted(Path("aoi").glob("*.geojson"))


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_InertFormatter("%(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in ("fiona", "pyogrio", "distributed", "matplotlib", "PIL", "fontTools"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    # urllib3's retry warnings print request URLs, and signed redirect URLs carry credentials
    # in their query: never log them (the downloader reports failures itself, without them)
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    # GDAL's own warnings ("CPLE_AppDefined in ...: TIFFReadDirectory ...") repeat what our one-line
    # errors say in words a user can act on; library warnings likewise. --debug shows both.
    logging.getLogger("rasterio").setLevel(logging.DEBUG if args.debug else logging.ERROR)
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.DEBUG if args.debug else logging.ERROR)


def _scheduler(address: str | None):
    if not address:
        from contextlib import nullcontext

        return nullcontext()
    from distributed import Client

    try:
        return Client(address, timeout="10s")
    except OSError as e:
        raise ConfigError(f"cannot reach dask scheduler {address} ({e})") from e


def _read_sites(paths: Sequence[Path], params: Params, args: argparse.Namespace):
    """Sites from files; an explicit --radius re-buffers every point site to it."""
    from pipeline.read.sites import read_sites, with_radius

    sites = read_sites(paths, params.default_radius_m)
    if getattr(args, "default_radius_m", None) is not None:
        sites = with_radius(sites, params.default_radius_m)
    return sites


def _check_out_file(out: Path) -> None:
    if out.is_dir():
        raise ConfigError(
            f"{out}: is a folder; extract --out takes a file name such as {out / 'site_months.csv'}"
        )
    if out.exists() and not out.is_file():
        raise ConfigError(
            f"{out}: is not a regular file (a device, pipe or socket) and is never replaced; extract "
            "--out takes the name of a CSV file to write, such as site_months.csv"
        )
    if not out.parent.exists():
        raise ConfigError(f"{out.parent}: folder not found for --out; create it first")


def _check_out_dir(out: Path) -> None:
    """Fail before the work, not after it, when the results could not be written."""
    real = Path(os.path.realpath(out))
    if real == real.parent:
        raise ConfigError(
            f"{out}: is the file system root; --out takes a folder of its own for the results, "
            "such as outputs/"
        )
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file; --out takes a folder for the results")
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{out}: cannot write there ({existing} is not writable); choose another --out"
        )


def _cache_dir(args: argparse.Namespace) -> Path | None:
    """The run's cache folder (cube, input checksums): --cache-dir, else <data-dir>/cache; None for 'none'."""
    chosen = args.cache_dir or args.data_dir / "cache"
    return None if str(chosen).lower() == "none" else chosen


def _cube_dir(cache_dir: Path | None) -> Path | None:
    if cache_dir is None or str(cache_dir).lower() == "none":
        return None
    return cache_dir / "cube"


def _memo_dir(cache_dir: Path | None) -> Path | None:
    """Where a study keeps its stages' results for re-runs (:mod:`pipeline.memo`)."""
    if cache_dir is None or str(cache_dir).lower() == "none":
        return None
    return cache_dir / "results"


# --------------------------------------------------------------------------- commands


CLAIM_SUFFIXES = (".yaml", ".yml")


def cmd_sites_validate(args: argparse.Namespace) -> int:
    from pipeline.read.sites import validate_site_files

    radius = Params(default_radius_m=args.default_radius_m).default_radius_m  # checked like run's
    claim_files = [p for p in args.paths if p.suffix.lower() in CLAIM_SUFFIXES]
    site_files = [p for p in args.paths if p not in claim_files]
    problems = validate_site_files(site_files, radius) if site_files else []
    lines = [(str(p), p.severity == "error") for p in problems]
    lines += _claim_problems(claim_files, site_files, radius, usable=not any(e for _, e in lines))
    for line, _ in lines:
        print(inert(line))
    errors = sum(e for _, e in lines)
    if not errors:
        print(
            f"ok: {len(args.paths)} file(s) usable"
            + (f", {len(lines)} warning(s)" if lines else "")
        )
    return 1 if errors else 0


def _claim_problems(
    claim_files: Sequence[Path], site_files: Sequence[Path], radius: float, usable: bool
) -> list[tuple[str, bool]]:
    """(line, is_error) per claim file; with usable site files, the claim's n_sites is checked against them."""
    from pipeline.errors import ClaimError
    from pipeline.read.claims import check_claim_sites, load_claim

    out: list[tuple[str, bool]] = []
    sites = None
    if claim_files and site_files and usable:
        from pipeline.read.sites import read_sites

        sites = read_sites(site_files, radius)
    for path in claim_files:
        try:
            claim = load_claim(path)
            note = check_claim_sites(claim, sites, path, strict=True) if sites is not None else None
        except ClaimError as e:
            out.append((str(e), True))
            continue
        if note:
            out.append((note.replace(": not judged:", ": warning: not judged:", 1), False))
    return out


def cmd_extract(args: argparse.Namespace) -> int:
    from pipeline.analysis import extract_sites
    from pipeline.fetch.acquire import is_synthetic
    from pipeline.outputs import write_csv_atomic
    from pipeline.read.sources import find_monthly_rasters

    params = params_from_args(args)
    _check_out_file(args.out)
    sites = _read_sites(args.sites, params, args)
    rasters = find_monthly_rasters(args.rasters, eog_config=params.eog_config)
    with _scheduler(args.scheduler):
        view = extract_sites(
            sites, rasters, params, progress=not args.quiet, cube_dir=_cube_dir(args.cache_dir)
        )
    data_kind = "synthetic" if is_synthetic(rasters) else "real"
    write_csv_atomic(args.out, view, data_kind)
    log.info(
        "wrote %s: %d sites x %d months (%s data)", args.out, len(sites), len(rasters), data_kind
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.judge.verdict import headline
    from pipeline.read.claims import default_claim, load_claim
    from pipeline.study import StudySpec, run_study

    claim = load_claim(args.claim) if args.claim else default_claim()
    params = params_from_args(args, claim)
    _check_out_dir(args.out)
    site_files = args.sites or default_site_files()
    spec = StudySpec(
        sites=_read_sites(site_files, params, args),
        params=params,
        claim=claim,
        claim_path=args.claim,
        source=args.source,
        rasters_dir=args.rasters,
        data_dir=args.data_dir,
        cube_dir=_cube_dir(_cache_dir(args)),
        memo_dir=_memo_dir(_cache_dir(args)),
        sensitivity=not args.no_sensitivity,
        compare=not args.no_compare,
        progress=not args.quiet,
        site_files=site_files,
        on_compute=None if args.no_figures else _start_chart_workers(args.jobs),
    )
    try:
        with _scheduler(args.scheduler):
            results = run_study(spec)
        _write_run(results, args)
    finally:
        from pipeline.publish.render import stop_workers

        stop_workers()  # started ahead and not needed
    print(headline(results.verdict))
    print(f"outputs in {args.out}/")
    return 0


def _start_chart_workers(jobs: int | None) -> Callable[[str], None]:
    """When a stage must be computed, start the chart workers: their start-up overlaps the
    computation, and its new results will most likely be drawn (a re-run that reads every
    stage back keeps its charts and starts none)."""

    def start(stage: str) -> None:
        from pipeline.publish import start_chart_workers

        start_chart_workers(jobs)

    return start


def _write_run(results, args: argparse.Namespace) -> None:
    from pipeline.outputs import staged
    from pipeline.study import write_tables

    with staged(args.out, owns=("",)) as out:
        write_tables(results, out)
        if not args.no_figures:
            from pipeline.publish import write_publication
            from pipeline.publish.style import Style

            # the first language in every format, the others as the PNG their report shows
            first, *others = args.lang
            # input checksums are cached in the cache folder
            write_publication(
                results,
                out,
                Style(lang=first),
                cache_dir=_cache_dir(args),
                progress=not args.quiet,
                jobs=args.jobs,
                also=[Style(lang=lang, formats=("png",)) for lang in others],
            )


def cmd_compare(args: argparse.Namespace) -> int:
    from pipeline.compare.county import write_comparison
    from pipeline.outputs import staged
    from pipeline.read.claims import default_claim, load_claim
    from pipeline.study import StudySpec, run_study
    from pipeline.words import synthetic_tag

    claim = load_claim(args.claim) if args.claim else default_claim()
    params = params_from_args(args, claim)
    if params.product == "annual":
        raise ConfigError(
            "compare reads monthly composites (valid months, the event study); drop --product annual"
        )
    _check_out_dir(args.out)
    site_files = args.sites or default_site_files()
    spec = StudySpec(
        sites=_read_sites(site_files, params, args),
        params=params,
        claim=claim,
        source=args.source,
        rasters_dir=args.rasters,
        data_dir=args.data_dir,
        cube_dir=_cube_dir(_cache_dir(args)),
        memo_dir=_memo_dir(_cache_dir(args)),
        analysis=False,
        compare=True,
        compare_required=True,
        units_path=args.units,
        batch=args.batch,
        progress=not args.quiet,
        site_files=site_files,
    )
    with _scheduler(args.scheduler):
        comp = run_study(spec).comparison
    if comp is None:  # compare_required: the study raises rather than skip; this is a guard
        raise ConfigError("no comparison was made")
    got_kind = comp.did["data_kind"]
    if any((args.out / n).exists() for n in ("verdict.json", "report.html", "report.md")):
        log.warning(
            "%s: the report and site tables there come from an earlier 'nightlights run' and now disagree with "
            "this comparison's files; 'nightlights run' makes both together, or give compare another --out",
            args.out,
        )
    with staged(args.out) as out:
        write_comparison(comp, out)
        if not args.no_figures:
            from pipeline.publish.comparison import write_figures

            write_figures(comp, out, progress=not args.quiet, jobs=args.jobs)
    d = comp.did
    print(
        f"{synthetic_tag() if got_kind == 'synthetic' else ''}designated minus other units, "
        f"{params.baseline_year} to {params.target_year}: {d['estimate_log']:+.3f} log "
        f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}], p = {d['p_value']:.4f} "
        f"({d['n_treated']} treated, {d['n_control']} controls"
        + (
            f"; {d['n_excluded_controls']} units of other batches already building left out"
            if d.get("n_excluded_controls")
            else ""
        )
        + ")"
    )
    if (
        d.get("p_value", 0) >= 0.05 and d.get("mde_log") is not None
    ):  # issue 23: the power of a null
        print(
            f"not significant, and no proof of no effect: effects below {d['mde_log']:+.3f} log "
            f"({100 * math.expm1(d['mde_log']):+.0f}%) are detected less than 4 times in 5"
        )
    print(f"outputs in {args.out}/")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from pipeline.fetch import area, download_months, download_years, month_list, year_list

    annual = args.product == "annual"
    bbox, geoms = area(args.bbox, args.sites or default_site_files())
    options = {
        "progress": not args.quiet,
        "eog_config": args.eog_config,
        "geometries": geoms,
        "refresh": not args.no_refresh,
    }
    if annual:
        folder, outcome = download_years(
            args.source, year_list(args.start, args.end), bbox, args.data_dir, **options
        )
    else:
        folder, outcome = download_months(
            args.source, month_list(args.start, args.end), bbox, args.data_dir, **options
        )
    unit = "year" if annual else "month"
    print(
        f"{args.source}: {len(outcome['downloaded'])} {unit}(s) downloaded, {len(outcome['cached'])} already "
        f"cached, {len(outcome['not_published'])} not published; files in {folder}/"
    )
    if outcome["not_published"]:
        print("not published (skipped): " + ", ".join(outcome["not_published"]))
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from pipeline.outputs import staged
    from pipeline.publish import write_publication
    from pipeline.publish.report import figure_folder, report_names
    from pipeline.publish.style import style_from_options
    from pipeline.results import load_results

    style, *also = (
        style_from_options(args.format, args.dpi, args.style, args.width_mm, lang)
        for lang in args.lang
    )
    results = load_results(args.out)
    # each language replaces its own charts only: English ones are figures/ but figures/ko/
    owns = tuple(f"{figure_folder(lang)}/" for lang in args.lang)
    spares = tuple(f"{figure_folder(x)}/" for x in LANGS if x not in args.lang and x != "en")
    with staged(args.out, owns=owns, spares=spares) as out:
        cache = args.data_dir / "cache" if args.data_dir.is_dir() else None
        written = write_publication(
            results,
            out,
            style,
            cache_dir=cache,
            progress=not args.quiet,
            jobs=args.jobs,
            also=also,
        )
    reports = ", ".join(name for lang in args.lang for name in report_names(lang))
    folders = " and ".join(f"{figure_folder(lang)}/" for lang in args.lang)
    print(
        f"{len(written)} charts ({', '.join(style.formats)}) in {folders}, {reports}, explore.html "
        f"and GIS files in {args.out}/"
    )
    return 0


def cmd_cache_prune(args: argparse.Namespace) -> int:
    from pipeline.measure.cache import human_size, prune_cubes
    from pipeline.memo import prune_memo

    cache = _cache_dir(args)
    if cache is None:
        print("no cache folder ('none'): nothing to prune")
        return 0
    n, freed = prune_cubes(cache / "cube")
    print(
        f"{cache / 'cube'}: removed {n} cube(s) whose inputs are gone or changed, freed {human_size(freed)}"
    )
    n, freed = prune_memo(cache / "results")
    print(
        f"{cache / 'results'}: removed {n} kept result(s) whose inputs are gone or changed, "
        f"freed {human_size(freed)}"
    )
    return 0


# --------------------------------------------------------------------------- entry point


class Terminated(BaseException):
    """SIGTERM, turned into an exception so staging folders are cleaned up on the way out."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.debug, args.quiet = getattr(args, "debug", False), getattr(args, "quiet", False)
    _setup_logging(args)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    try:
        return _run(args)
    finally:
        logging.captureWarnings(False)
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _holding(args: argparse.Namespace):
    """run, compare and figures hold their output folder from start to end (one command per folder)."""
    if args.command not in ("run", "compare", "figures"):
        from contextlib import nullcontext

        return nullcontext()
    from pipeline.outputs import hold

    _check_out_dir(args.out)
    return hold(args.out)


def _run(args: argparse.Namespace) -> int:
    """Run the command; expected failures become one line on stderr and an exit code."""
    try:
        with _holding(args):
            return int(args.func(args) or 0)
    except NightlightsError as e:
        if args.debug:
            raise
        for line in inert(str(e)).splitlines() or [e.__class__.__name__]:
            print(f"nightlights: error: {line}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("nightlights: interrupted; earlier outputs were left untouched", file=sys.stderr)
        return 130
    except Terminated:
        print("nightlights: terminated; earlier outputs were left untouched", file=sys.stderr)
        return 143
    except BrokenPipeError:
        # the reader of our output went away (e.g. '| head'): nothing left to tell anyone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except ImportError as e:
        if args.debug:
            raise
        print(
            f"nightlights: error: '{args.command}' needs the Python package '{e.name or e}', which failed to "
            f"import ({inert(str(e))[:200]}); reinstall with 'make install' (or pip install -e .)",
            file=sys.stderr,
        )
        return 2
    except OSError as e:
        if args.debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(
            inert(
                f"nightlights: error: {where}{e.strerror or e} (earlier outputs were left untouched)"
            ),
            file=sys.stderr,
        )
        return 1
    except Exception as e:
        if args.debug:
            raise
        print(
            f"nightlights: unexpected error: {e.__class__.__name__}: {inert(str(e))[:300]} "
            "(run again with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
