"""Analysis parameters and data-access settings, each defined once with its default.

Parameters come from, in increasing priority: the defaults below, the ``analysis:``
section of the user config file, a ``--config FILE.yaml``, and command-line flags.
Credentials come only from the environment or the user config file and are never
printed (their ``repr`` is masked).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from pipeline.errors import ConfigError
from pipeline.read.yamlsafe import MAX_YAML_BYTES, parse_yaml, read_text_bounded

# The option sets, once: flags' choices, parameter checks and variant grids derive from these.
Statistic = Literal["median", "mean", "sol"]
PixelRule = Literal["exact", "centroid", "all_touched"]
EogConfig = Literal["vcmslcfg", "vcmcfg"]
Source = Literal["auto", "demo", "local", "eog", "blackmarble"]
DownloadSource = Literal["eog", "blackmarble"]
# Monthly composites (EOG VNL v10, VNP46A3) or annual ones (EOG VNL v2, VNP46A4).
Product = Literal["monthly", "annual"]
ChartFormat = Literal["png", "svg", "pdf"]
ChartKind = Literal["paper", "slide"]
Lang = Literal["en", "ko"]
STATISTICS: tuple[str, ...] = get_args(Statistic)
PIXEL_RULES: tuple[str, ...] = get_args(PixelRule)
EOG_CONFIGS: tuple[str, ...] = get_args(EogConfig)
SOURCES: tuple[str, ...] = get_args(Source)
DOWNLOAD_SOURCES: tuple[str, ...] = get_args(DownloadSource)
PRODUCTS: tuple[str, ...] = get_args(Product)
CHART_FORMATS: tuple[str, ...] = get_args(ChartFormat)
CHART_KINDS: tuple[str, ...] = get_args(ChartKind)
LANGS: tuple[str, ...] = get_args(Lang)
# VIIRS night-light products begin in 2012: EOG monthly v10 in 2012-04, Black Marble VNP46A3 in
# 2012-01, annual VNL v2 and VNP46A4 in 2012. Years are checked before any work (a typo such as
# 20255 would otherwise start generating or downloading 200,000 months).
FIRST_YEAR = 2012
FIRST_YEAR_WHY = (
    "VIIRS composites begin in 2012: EOG monthly 2012-04, Black Marble 2012-01, annual 2012"
)
MAX_N_BOOT = 100_000
CHART_WIDTH_MM = 183.0  # two journal columns; 89 is one
CHART_DPI = 300


@dataclass(frozen=True)
class Params:
    """Every analysis parameter, with its default and why (see README, "Method")."""

    baseline_year: int = field(default=2024, metadata={"help": "year compared against"})
    target_year: int = field(default=2025, metadata={"help": "year whose change is measured"})
    months: tuple[int, ...] = field(
        default=tuple(range(1, 13)),
        metadata={"help": "calendar months considered (e.g. 2..12 for after the openings)"},
    )
    default_radius_m: float = field(
        default=2000.0,
        metadata={
            "help": "buffer (m) for point sites: 0.5-2 km location error + ~0.75 km VIIRS footprint"
        },
    )
    pixel_rule: PixelRule = field(
        default="exact",
        metadata={"help": "exact coverage fractions, centroid-like (>=0.5 covered) or all-touched"},
    )
    min_cf_cvg: int = field(
        default=3,
        metadata={"help": "EOG: pixels with fewer cloud-free observations are missing, not dark"},
    )
    bm_quality: tuple[int, ...] = field(
        default=(0,), metadata={"help": "Black Marble: _Quality values kept (0 = good)"}
    )
    min_valid_fraction: float = field(
        default=0.5,
        metadata={"help": "a site-month is missing when less of its weight is on valid pixels"},
    )
    min_matched_months: int = field(
        default=6,
        metadata={"help": "fewer calendar months valid in both years -> insufficient_data"},
    )
    statistic: Statistic = field(
        default="median",
        metadata={"help": "yearly statistic over matched months: median, mean, sol"},
    )
    epsilon: float = field(
        default=0.1,
        metadata={"help": "nW/cm2/sr added before the log ratio so near-dark sites do not explode"},
    )
    threshold: float = field(
        default=0.25,
        metadata={"help": "|ln ratio| needed to call a change (0.25 = +28% / -22%)"},
    )
    confidence: float = field(default=0.95, metadata={"help": "bootstrap interval level"})
    n_boot: int = field(default=2000, metadata={"help": "bootstrap resamples"})
    seed: int = field(default=20240228, metadata={"help": "bootstrap seed"})
    ring_inner_m: float = field(
        default=4000.0, metadata={"help": "background ring inner radius from the site centre (m)"}
    )
    ring_outer_m: float = field(
        default=8000.0, metadata={"help": "background ring outer radius from the site centre (m)"}
    )
    eog_config: EogConfig = field(
        default="vcmslcfg", metadata={"help": "EOG configuration used when a folder has both"}
    )
    product: Product = field(
        default="monthly",
        metadata={
            "help": "monthly composites (yearly value: statistic of matched months) or annual ones "
            "(yearly value: the composite itself)"
        },
    )
    compare_start_year: int | None = field(
        default=None,
        metadata={
            "help": "first year of the county comparison's panel, for pre-trend placebos "
            "(default baseline_year - 4; each extra year is 12 more months to download, ~3-5 GB from EOG)"
        },
    )

    @property
    def compare_years(self) -> tuple[int, ...]:
        """The years the comparison reads: ``compare_start_year`` (default baseline - 4, not before
        :data:`FIRST_YEAR`) to the target."""
        start = (
            max(self.baseline_year - 4, FIRST_YEAR)
            if self.compare_start_year is None
            else self.compare_start_year
        )
        return tuple(range(start, self.target_year + 1))

    def __post_init__(self) -> None:
        _check_params(self)

    def replace(self, **changes: Any) -> Params:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


def _check_params(p: Params) -> None:
    def bad(name: str, why: str) -> ConfigError:
        return ConfigError(f"parameter {name}={_short(getattr(p, name))}: {why}")

    last = dt.date.today().year + 1  # a composite of next year is the latest anyone can mean
    for name in ("baseline_year", "target_year"):
        year = getattr(p, name)
        if isinstance(year, bool) or not isinstance(year, int) or not FIRST_YEAR <= year <= last:
            raise bad(name, f"must be a year from {FIRST_YEAR} to {last} ({FIRST_YEAR_WHY})")
    if p.target_year <= p.baseline_year:
        raise bad("target_year", f"must be after baseline_year={p.baseline_year}")
    if not p.months or any(not 1 <= m <= 12 for m in p.months):
        raise bad("months", "must be calendar months 1..12")
    if p.statistic not in STATISTICS:
        raise bad("statistic", f"must be one of {', '.join(STATISTICS)}")
    if p.pixel_rule not in PIXEL_RULES:
        raise bad("pixel_rule", f"must be one of {', '.join(PIXEL_RULES)}")
    if p.product not in PRODUCTS:
        raise bad("product", f"must be {' or '.join(PRODUCTS)}")
    if p.eog_config not in EOG_CONFIGS:
        raise bad("eog_config", f"must be {' or '.join(EOG_CONFIGS)}")
    for name in ("default_radius_m", "epsilon", "n_boot"):
        if not getattr(p, name) > 0:
            raise bad(name, "must be positive")
    if not p.n_boot <= MAX_N_BOOT:
        raise bad("n_boot", f"must be at most {MAX_N_BOOT} (the default is 2000)")
    if isinstance(p.seed, bool) or not isinstance(p.seed, int) or not 0 <= p.seed < 2**63:
        raise bad("seed", "must be a whole number from 0 to 2**63 - 1")
    if not p.default_radius_m <= 50_000:
        raise bad("default_radius_m", "must be at most 50000 m (a site, not a region)")
    if not 0 <= p.threshold < 5:
        raise bad("threshold", "must be a log ratio between 0 and 5 (e.g. 0.25 for +28% / -22%)")
    if not 0 < p.confidence < 1:
        raise bad("confidence", "must be between 0 and 1")
    if not 0 <= p.min_valid_fraction <= 1:
        raise bad("min_valid_fraction", "must be between 0 and 1")
    if not 3 <= p.min_matched_months <= 12:
        raise bad(
            "min_matched_months",
            "must be between 3 and 12 (fewer months give no interval to speak of)",
        )
    if p.min_cf_cvg < 1:
        raise bad(
            "min_cf_cvg",
            "must be at least 1: a pixel with no cloud-free observation is not observed",
        )
    if not p.bm_quality or any(not 0 <= q <= 255 for q in p.bm_quality):
        raise bad(
            "bm_quality",
            "must list the Black Marble _Quality values to keep (0 = good, 1 = poor, 2 = gap-filled)",
        )
    if not 0 <= p.ring_inner_m < p.ring_outer_m:
        raise bad("ring_outer_m", f"must exceed ring_inner_m={p.ring_inner_m}")
    if not p.ring_outer_m <= 100_000:
        raise bad(
            "ring_outer_m", "must be at most 100000 m (the background near a site, not a region)"
        )
    start = p.compare_start_year
    if start is not None and (
        isinstance(start, bool)
        or not isinstance(start, int)
        or not FIRST_YEAR <= start <= p.baseline_year
    ):
        raise bad(
            "compare_start_year",
            f"must be a year from {FIRST_YEAR} to baseline_year={p.baseline_year}",
        )


def _short(value: Any) -> str:
    """A value as it may appear in a one-line message: its repr, cut at 60 characters."""
    try:
        text = repr(value)
    except ValueError:  # an integer too long for Python to print
        return f"<a number of {value.bit_length()} bits>"
    return text if len(text) <= 60 else text[:57] + "..."


def params_from_mapping(values: dict[str, Any], origin: str, base: Params | None = None) -> Params:
    """Build :class:`Params` from a mapping (a YAML section), naming ``origin`` in errors."""
    base = base or Params()
    known = {f.name: f for f in dataclasses.fields(Params)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(
                f"{origin}: unknown parameter {str(key)[:40]!r}; valid ones are {', '.join(sorted(known))}"
            )
        default = getattr(base, key)
        try:
            if isinstance(default, tuple):
                value = tuple(
                    int(v) for v in (value if isinstance(value, list | tuple) else [value])
                )
            elif isinstance(default, bool):
                value = bool(value)
            elif isinstance(default, int):
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError("expected a whole number")
                value = int(value)
            elif isinstance(default, float):
                if isinstance(value, bool):
                    raise ValueError("expected a number")
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError("not finite")
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"{origin}: parameter {key}={_short(value)} is not valid ({str(e)[:100]})"
            ) from e
        changes[key] = value
    try:
        return dataclasses.replace(base, **changes)
    except ConfigError as e:
        raise ConfigError(f"{origin}: {e}") from e


# --------------------------------------------------------------------------- data access


class Secret(str):
    """A string that never shows itself in reprs, logs or f-string debugging."""

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True)
class DataSettings:
    """Where the real products live and how to authenticate (env > user config > defaults)."""

    eog_url: str = "https://eogdata.mines.edu/nighttime_light"
    eog_token_url: str = "https://eogauth-new.mines.edu/realms/eog/protocol/openid-connect/token"
    eog_token: Secret | None = None
    eog_client_id: str | None = None
    eog_client_secret: Secret | None = None
    eog_username: str | None = None
    eog_password: Secret | None = None
    laads_url: str = "https://ladsweb.modaps.eosdis.nasa.gov"
    earthdata_token: Secret | None = None
    # A transfer is given up (and resumed by the next run) when fewer than download_min_rate_kbs
    # KB/s arrive over download_rate_window_s, or nothing for download_read_timeout_s.
    download_min_rate_kbs: float = 1.0
    download_rate_window_s: float = 60.0
    download_read_timeout_s: float = 120.0

    def has_eog(self) -> bool:
        return bool(
            self.eog_token or (self.eog_client_id and self.eog_username and self.eog_password)
        )

    def has_blackmarble(self) -> bool:
        return bool(self.earthdata_token)


ENV_VARS: dict[str, str] = {
    "eog_url": "NIGHTLIGHTS_EOG_URL",
    "eog_token_url": "NIGHTLIGHTS_EOG_TOKEN_URL",
    "eog_token": "EOG_TOKEN",
    "eog_client_id": "EOG_CLIENT_ID",
    "eog_client_secret": "EOG_CLIENT_SECRET",
    "eog_username": "EOG_USERNAME",
    "eog_password": "EOG_PASSWORD",
    "laads_url": "NIGHTLIGHTS_LAADS_URL",
    "earthdata_token": "EARTHDATA_TOKEN",
    "download_min_rate_kbs": "NIGHTLIGHTS_DOWNLOAD_MIN_RATE_KBS",
    "download_rate_window_s": "NIGHTLIGHTS_DOWNLOAD_RATE_WINDOW_S",
    "download_read_timeout_s": "NIGHTLIGHTS_DOWNLOAD_READ_TIMEOUT_S",
}
_NUMBERS = {
    "download_min_rate_kbs": (0.0, 1e6),
    "download_rate_window_s": (1.0, 3600.0),
    "download_read_timeout_s": (1.0, 3600.0),
}
_SECRETS = {"eog_token", "eog_client_secret", "eog_password", "earthdata_token"}


def user_config_path(env: dict[str, str] | None = None) -> Path:
    """``$NIGHTLIGHTS_CONFIG``, else ``$XDG_CONFIG_HOME/nightlights/config.yaml``."""
    env = dict(os.environ) if env is None else env
    if env.get("NIGHTLIGHTS_CONFIG"):
        return Path(env["NIGHTLIGHTS_CONFIG"]).expanduser()
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "nightlights" / "config.yaml"


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader; errors name the file."""
    try:
        text = read_text_bounded(path)
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: config file not found") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config file ({e.__class__.__name__})") from e
    if text is None:
        raise ConfigError(
            f"{path}: more than {MAX_YAML_BYTES} bytes; a config file is a few lines of YAML"
        )
    data = parse_yaml(text, path, ConfigError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, found {type(data).__name__}")
    return data


def load_user_config(env: dict[str, str] | None = None) -> dict[str, Any]:
    path = user_config_path(env)
    return read_yaml(path) if path.is_file() else {}


def load_data_settings(env: dict[str, str] | None = None) -> DataSettings:
    """Data settings from the user config's ``data:`` section, overridden by environment."""
    env = dict(os.environ) if env is None else env
    section = load_user_config(env).get("data") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{user_config_path(env)}: 'data' must be a mapping")
    values: dict[str, Any] = {}
    for name, var in ENV_VARS.items():
        value = env.get(var) or section.get(name)
        if value in (None, ""):
            continue
        value = str(value).strip()
        if name in _NUMBERS:
            values[name] = _setting_number(name, value, var, user_config_path(env))
            continue
        values[name] = Secret(value) if name in _SECRETS else value
    return DataSettings(**values)


def _setting_number(name: str, value: str, var: str, path: Path) -> float:
    low, high = _NUMBERS[name]
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not low <= number <= high:
        raise ConfigError(
            f"{var} or {path} data.{name}={_short(value)}: must be a number from {low:g} to {high:g}"
        )
    return number
