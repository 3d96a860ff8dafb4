"""Command line: parse options, call one stage, write its result. No analysis here.

    nightlights run [--sites PATH]... [--source demo|local|eog|blackmarble] [--rasters DIR]
                    [--baseline-year Y] [--target-year Y] [--out DIR]
    nightlights extract --sites PATH... --rasters DIR --out FILE.csv
    nightlights sites validate PATH...
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import textwrap
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from pipeline import __version__
from pipeline.config import (
    Params,
    load_data_settings,
    load_user_config,
    params_from_mapping,
    read_yaml,
)
from pipeline.errors import ConfigError, NightlightsError, SourceError

log = logging.getLogger("nightlights")

ROOT = Path.cwd()
SOURCES = ("auto", "demo", "local", "eog", "blackmarble")


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line too, pointing at --help instead of printing the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="nightlights", formatter_class=_formatter,
        description="Did these places get brighter or dimmer? Year-over-year VIIRS night-light change "
                    "for site polygons, set against a published claim.",
        epilog="Examples:\n  nightlights run                      # demo data unless credentials are set\n"
               "  nightlights run --source local --rasters data/my_months --sites aoi/sites_2024.geojson\n"
               "  nightlights sites validate aoi/*.geojson\n\nRun 'nightlights COMMAND --help' for details.")
    p.add_argument("--version", action="version", version=f"nightlights {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a flag given before a nested command ("sites --debug validate") is not reset by
    # the nested parser's own default
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and debug logs")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars, warnings only")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_run(sub, common)
    _add_extract(sub, common)
    _add_sites(sub, common)
    _add_download(sub, common)
    _add_figures(sub, common)
    return p


def _analysis_options(sp: argparse.ArgumentParser, change: bool = True) -> None:
    """Method flags; ``extract`` takes only those that shape the site-by-month table."""
    g = sp.add_argument_group("method (defaults: see README 'Method')")
    if change:
        g.add_argument("--baseline-year", type=int, metavar="Y", help="year compared against (default 2024)")
        g.add_argument("--target-year", type=int, metavar="Y", help="year whose change is measured (default 2025)")
        g.add_argument("--threshold", type=float, metavar="D",
                       help="|ln ratio| that counts as change (default 0.25, i.e. +28%% / -22%%)")
        g.add_argument("--statistic", choices=("median", "mean", "sol"),
                       help="yearly statistic: median, mean or sol (sum of lights); default median")
    g.add_argument("--radius", type=float, metavar="M", dest="default_radius_m",
                   help="buffer in metres for every point site, overriding radius_m in the files "
                        "(default: radius_m, else 2000)")
    g.add_argument("--pixel-rule", choices=("exact", "centroid", "all_touched"), help="pixel inclusion (default exact)")
    g.add_argument("--min-cf-cvg", type=int, metavar="N", help="EOG: minimum cloud-free observations (default 3)")
    g.add_argument("--config", type=Path, metavar="FILE.yaml", help="YAML file of parameters (keys as in README)")


def _add_run(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sp = sub.add_parser(
        "run", parents=[common], formatter_class=_formatter, help="the whole analysis",
        description=textwrap.dedent("""\
            The whole analysis: sites -> monthly rasters -> site-by-month table -> yearly change
            -> classes -> verdict against the claim, with tables and charts in --out.

            Source 'auto' (default) uses EOG when EOG credentials are configured, Black Marble
            when an Earthdata token is, and otherwise the synthetic demo, saying so."""),
        epilog=textwrap.dedent("""\
            Examples:
              nightlights run
              nightlights run --source local --rasters ~/viirs/monthly --sites a.geojson --sites b.geojson
              nightlights run --source eog --baseline-year 2024 --target-year 2025 --out results/"""))
    sp.add_argument("--sites", action="extend", nargs="+", type=Path, metavar="PATH",
                    help="site GeoJSON file(s) (repeatable; default: every aoi/*.geojson)")
    sp.add_argument("--source", choices=SOURCES, default="auto", help="where the monthly rasters come from")
    sp.add_argument("--rasters", type=Path, metavar="DIR", help="folder of monthly rasters (--source local)")
    sp.add_argument("--out", type=Path, default=Path("outputs"), metavar="DIR", help="output folder (default outputs/)")
    sp.add_argument("--data-dir", type=Path, default=Path("data"), metavar="DIR",
                    help="where downloads and the demo are cached (default data/)")
    sp.add_argument("--cache-dir", type=Path, metavar="DIR",
                    help="study cube cache (default <data-dir>/cache); 'none' reads the monthly files directly")
    sp.add_argument("--no-sensitivity", action="store_true",
                    help="skip the method-variant grid and the calibration controls (faster)")
    sp.add_argument("--no-figures", action="store_true", help="tables and verdict only")
    sp.add_argument("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler (e.g. tcp://host:8786)")
    _analysis_options(sp)
    sp.set_defaults(func=cmd_run)


def _add_extract(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sp = sub.add_parser(
        "extract", parents=[common], formatter_class=_formatter, help="only the site-by-month table",
        description="Only the site-by-month table: exact coverage-weighted radiance of each site in each month.",
        epilog="Example:\n  nightlights extract --sites aoi/sites_2024.geojson --rasters data/eog --out site_months.csv")
    sp.add_argument("--sites", action="extend", type=Path, metavar="PATH", required=True, nargs="+",
                    help="site GeoJSON file(s) (repeatable)")
    sp.add_argument("--rasters", type=Path, metavar="DIR", required=True, help="folder of monthly rasters")
    sp.add_argument("--out", type=Path, metavar="FILE.csv", required=True, help="output CSV")
    sp.add_argument("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler address")
    sp.add_argument("--cache-dir", type=Path, metavar="DIR",
                    help="build and reuse a study cube here (fast re-runs); default: read the files directly")
    _analysis_options(sp, change=False)
    sp.set_defaults(func=cmd_extract)


def _add_sites(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sp = sub.add_parser("sites", parents=[common], formatter_class=_formatter, help="site file tools",
                        description="Site file tools.", epilog="Example:\n  nightlights sites validate aoi/*.geojson")
    ssub = sp.add_subparsers(dest="sites_command", metavar="ACTION")
    ssub.required = True
    v = ssub.add_parser(
        "validate", parents=[common], formatter_class=_formatter, help="check site files, explain every problem",
        description="Check site GeoJSON files and print one line per problem (file, feature, what to do). "
                    "Exit 0 when usable (warnings allowed), 1 when any error.",
        epilog="Example:\n  nightlights sites validate aoi/sites_2024.geojson my_sites.geojson")
    v.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    v.add_argument("--radius", type=float, default=Params().default_radius_m, dest="default_radius_m",
                   metavar="M", help="buffer in metres for point sites")
    v.set_defaults(func=cmd_sites_validate)


def _add_download(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    try:
        from pipeline.download import add_download_parser
    except ImportError:
        return
    add_download_parser(sub, common, _formatter)


def _add_figures(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    try:
        from pipeline.report import add_figures_parser
    except ImportError:
        return
    add_figures_parser(sub, common, _formatter)


# --------------------------------------------------------------------------- helpers


def params_from_args(args: argparse.Namespace) -> Params:
    """Defaults < user config 'analysis:' < --config file < flags."""
    params = Params()
    analysis = _section(load_user_config().get("analysis"), "user config 'analysis'")
    if analysis:
        params = params_from_mapping(analysis, "user config 'analysis'", params)
    if getattr(args, "config", None):
        data = read_yaml(args.config)
        section = _section(data.get("analysis", data), f"{args.config}: 'analysis'")
        params = params_from_mapping(section, str(args.config), params)
    flags = {k: getattr(args, k, None) for k in ("baseline_year", "target_year", "threshold", "statistic",
                                                  "default_radius_m", "pixel_rule", "min_cf_cvg")}
    return params_from_mapping({k: v for k, v in flags.items() if v is not None}, "command line", params)


def _section(value: object, origin: str) -> dict:
    """A config section as a mapping: empty when left blank, an error when a list or value."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{origin} must be a mapping of parameter: value, found {type(value).__name__}")
    return value


def default_site_files() -> list[Path]:
    return sorted((ROOT / "aoi").glob("*.geojson"))


def resolve_source(requested: str, rasters: Path | None) -> str:
    if requested != "auto":
        return requested
    if rasters is not None:
        return "local"
    settings = load_data_settings()
    if settings.has_eog():
        return "eog"
    if settings.has_blackmarble():
        return "blackmarble"
    return "demo"


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
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


# --------------------------------------------------------------------------- commands


def cmd_sites_validate(args: argparse.Namespace) -> int:
    from pipeline.sites import validate_site_files

    radius = Params(default_radius_m=args.default_radius_m).default_radius_m  # checked like run's
    problems = validate_site_files(args.paths, radius)
    for p in problems:
        print(p)
    errors = sum(p.severity == "error" for p in problems)
    if not errors:
        print(f"ok: {len(args.paths)} file(s) usable" + (f", {len(problems)} warning(s)" if problems else ""))
    return 1 if errors else 0


def cmd_extract(args: argparse.Namespace) -> int:
    from pipeline.analysis import site_month_view
    from pipeline.outputs import write_csv_atomic
    from pipeline.sources import find_monthly_rasters
    from pipeline.zonal import zone_month_table

    params = params_from_args(args)
    _check_out_file(args.out)
    sites = _read_sites(args.sites, params, args)
    rasters = find_monthly_rasters(args.rasters, eog_config=params.eog_config)
    import geopandas as gpd

    zones = gpd.GeoDataFrame({"zone": sites["site_id"]}, geometry=sites.geometry.values, crs=sites.crs)
    with _scheduler(args.scheduler):
        table = zone_month_table(rasters, zones, (params.pixel_rule,), params.min_cf_cvg, params.bm_quality,
                                 progress=not args.quiet, cube_dir=_cube_dir(args.cache_dir))
    view = site_month_view(table, sites, params.pixel_rule, params.min_valid_fraction)
    data_kind = "synthetic" if _is_synthetic(rasters) else "real"
    write_csv_atomic(args.out, view.drop(columns=["ring_mean_radiance", "ring_valid_fraction"]), data_kind)
    log.info("wrote %s: %d sites x %d months (%s data)", args.out, len(sites), len(rasters), data_kind)
    return 0


def _is_synthetic(rasters) -> bool:
    import rasterio

    from pipeline.demo import is_synthetic_folder

    if not rasters:
        return False
    first = rasters[0].radiance
    if is_synthetic_folder(first.parent):
        return True
    with rasterio.open(first) as ds:
        return ds.tags().get("SYNTHETIC", "").lower() == "true"


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.analysis import analyse
    from pipeline.sources import find_monthly_rasters

    params = params_from_args(args)
    _check_out_dir(args.out)
    source = resolve_source(args.source, args.rasters)
    site_files = args.sites or default_site_files()
    sites = _read_sites(site_files, params, args)
    years = (params.baseline_year - 1, params.baseline_year, params.target_year)
    if args.rasters is not None and source != "local":
        raise ConfigError(f"--rasters is only read with --source local (this run's source is {source})")
    if source == "demo":
        why = "no data credentials configured, so this run uses" if args.source == "auto" else "this run uses"
        log.warning("SYNTHETIC DEMO DATA: %s generated rasters; its results are no evidence about North Korea "
                    "(see README 'Real data').", why)
        folder = _demo_folder(args.data_dir, sites, params, progress=not args.quiet)
    elif source == "local":
        if args.rasters is None:
            raise ConfigError("--source local needs --rasters DIR (the folder of monthly rasters)")
        folder = args.rasters
    else:
        folder = _download_folder(source, args, sites, years, params.eog_config)
    available = find_monthly_rasters(folder, eog_config=params.eog_config)
    rasters = [r for r in available if r.year in years]
    data_kind = "synthetic" if source == "demo" or _is_synthetic(rasters) else "real"
    if data_kind == "synthetic" and source != "demo":
        log.warning("SYNTHETIC DATA: the rasters in %s are tagged synthetic; outputs are labelled so.", folder)
    missing = [y for y in (params.baseline_year, params.target_year) if not any(r.year == y for r in rasters)]
    if missing:
        raise SourceError(f"{folder}: no monthly rasters for {', '.join(map(str, missing))} (the folder has "
                          f"{available[0].month} to {available[-1].month}); choose --baseline-year/--target-year "
                          "within that range")
    log.info("%d sites from %s; %d months from %s (%s)", len(sites), ", ".join(p.name for p in site_files),
             len(rasters), folder, data_kind)
    with _scheduler(args.scheduler):
        results = analyse(sites, rasters, params, source=source, data_kind=data_kind,
                          sensitivity=not args.no_sensitivity, progress=not args.quiet,
                          cube_dir=_cube_dir(_cache_dir(args)))
    _write_run(results, args, data_kind)
    from pipeline.verdict import headline

    print(headline(results.verdict))
    print(f"outputs in {args.out}/")
    return 0


def _read_sites(paths: Sequence[Path], params: Params, args: argparse.Namespace):
    """Sites from files; an explicit --radius re-buffers every point site to it."""
    from pipeline.sites import read_sites, with_radius

    sites = read_sites(paths, params.default_radius_m)
    if getattr(args, "default_radius_m", None) is not None:
        sites = with_radius(sites, params.default_radius_m)
    return sites


def _check_out_file(out: Path) -> None:
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; extract --out takes a file name such as {out / 'site_months.csv'}")
    if not out.parent.exists():
        raise ConfigError(f"{out.parent}: folder not found for --out; create it first")


def _check_out_dir(out: Path) -> None:
    """Fail before the work, not after it, when the results could not be written."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file; --out takes a folder for the results")
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{out}: cannot write there ({existing} is not writable); choose another --out")


def _cube_dir(cache_dir: Path | None) -> Path | None:
    if cache_dir is None or str(cache_dir).lower() == "none":
        return None
    return cache_dir / "cube"


def _demo_folder(data_dir: Path, sites, params: Params, progress: bool = True) -> Path:
    from pipeline.demo import DemoSpec, build_demo

    spec = DemoSpec(sites=tuple((r.site_id, float(r.center_lon), float(r.center_lat))
                                for r in sites.itertuples()),
                    years=(params.baseline_year - 1, params.baseline_year, params.target_year),
                    target_year=params.target_year)
    return build_demo(data_dir / "demo", spec, progress=progress)


def _download_folder(source: str, args: argparse.Namespace, sites, years: tuple[int, ...],
                     eog_config: str) -> Path:
    try:
        from pipeline.download import ensure_months
    except ImportError as e:
        raise ConfigError(f"--source {source}: the downloader is not available in this build") from e
    return ensure_months(source, years, sites, args.data_dir, progress=not args.quiet, eog_config=eog_config)


def _write_run(results, args: argparse.Namespace, data_kind: str) -> None:
    from pipeline.outputs import staged

    with staged(args.out, owns=("",)) as out:
        out.write_csv("site_months.csv", results.site_months, data_kind)
        out.write_csv("site_changes.csv", results.changes, data_kind)
        if results.sensitivity is not None:
            out.write_csv("sensitivity.csv", results.sensitivity, data_kind)
        out.write_json("verdict.json", results.verdict)
        if not args.no_figures:
            _write_figures(results, out, _cache_dir(args))


def _cache_dir(args: argparse.Namespace) -> Path | None:
    """The run's cache folder (cube, input checksums): --cache-dir, else <data-dir>/cache; None for 'none'."""
    chosen = args.cache_dir or args.data_dir / "cache"
    return None if str(chosen).lower() == "none" else chosen


def _write_figures(results, out, cache_dir: Path | None) -> None:
    from pipeline.report import write_publication

    write_publication(results, out, cache_dir=cache_dir)  # input checksums are cached there


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


def _run(args: argparse.Namespace) -> int:
    """Run the command; expected failures become one line on stderr and an exit code."""
    try:
        return int(args.func(args) or 0)
    except NightlightsError as e:
        if args.debug:
            raise
        for line in str(e).splitlines() or [e.__class__.__name__]:
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
    except OSError as e:
        if args.debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"nightlights: error: {where}{e.strerror or e} (earlier outputs were left untouched)",
              file=sys.stderr)
        return 1
    except Exception as e:
        if args.debug:
            raise
        print(f"nightlights: unexpected error: {e.__class__.__name__}: {str(e)[:300]} "
              "(run again with --debug for the traceback, and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
