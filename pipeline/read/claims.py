"""Claims: the published "k of n sites brightened" sentences the run is judged against.

Inputs
    A small YAML file per claim (``claims/*.yaml``): ``text``, ``source``, ``batch``,
    ``baseline_year``, ``target_year``, ``n_sites``, ``brightened`` and optionally
    ``similar_or_dimmer`` (default ``n_sites - brightened``), ``url``, ``date``, ``notes``,
    ``text_ko`` (the sentence in Korean, which the Korean report quotes) and ``text_ko_is``
    (``translation``, the default, or ``quotation``: what the report calls it).
Outputs
    A frozen :class:`Claim`; :func:`check_claim_sites` says whether the run's sites can
    judge it.

A claim is data, not code: judging another newspaper's sentence, or another batch, needs
a new file and no edit. Every problem with a file is one line naming the file and the fix.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

import pipeline
from pipeline.config import parse_yaml
from pipeline.errors import ClaimError
from pipeline.read.sites import MAX_BATCH_CHARS, batch_label, batch_labels, batch_order, in_batch
from pipeline.read.yamlsafe import read_text_bounded

DEFAULT_CLAIM_FILE = "joongang-2026-02-03.yaml"
MIN_YEAR, MAX_YEAR = 1992, 2100  # DMSP began in 1992; anything outside is a typo
MAX_CLAIM_BYTES = 100_000
_DATE_RE = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")


def _consistency_problem(v: dict[str, Any]) -> str | None:
    """What is wrong with the numbers, in words (None when they are consistent)."""
    for key in ("baseline_year", "target_year"):
        if not MIN_YEAR <= v[key] <= MAX_YEAR:
            return f"{key}={v[key]} is not a year between {MIN_YEAR} and {MAX_YEAR}"
    if v["baseline_year"] >= v["target_year"]:
        return (
            f"baseline_year={v['baseline_year']} must be before target_year={v['target_year']} "
            "(the claim compares the target year with the baseline)"
        )
    n, k = v["n_sites"], v["brightened"]
    if n < 1:
        return f"n_sites={n} must be at least 1"
    if k < 0:
        return f"brightened={k} cannot be negative"
    if k > n:
        return f"brightened={k} is more than n_sites={n}"
    rest = v.get("similar_or_dimmer")
    if rest is None:
        return None
    if rest < 0:
        return f"similar_or_dimmer={rest} cannot be negative"
    if k + rest != n:
        return (
            f"brightened={k} + similar_or_dimmer={rest} = {k + rest}, not n_sites={n}; every site is "
            f"either brightened or similar or dimmer (omit similar_or_dimmer to use {n - k})"
        )
    return None


@dataclass(frozen=True)
class Claim:
    """One published claim: of ``n_sites`` sites of ``batch``, ``brightened`` got brighter
    from ``baseline_year`` to ``target_year`` and ``similar_or_dimmer`` did not."""

    text: str
    source: str
    batch: str  # a label: a year is a label too (``"2024"``, ``"pilot"``)
    baseline_year: int
    target_year: int
    n_sites: int
    brightened: int
    similar_or_dimmer: int | None = None
    url: str | None = None
    date: str | None = None
    notes: str | None = None
    text_ko: str | None = None  # the Korean report quotes it (else ``text``, labelled)
    text_ko_is: str | None = None  # "translation" (None says so too) or "quotation"

    def __post_init__(self) -> None:
        label = batch_label(self.batch)
        if label is None:
            raise ClaimError("claim: batch must be a label (text or a year)")
        object.__setattr__(self, "batch", label)
        if self.similar_or_dimmer is None:
            object.__setattr__(self, "similar_or_dimmer", self.n_sites - self.brightened)
        problem = _consistency_problem(dataclasses.asdict(self))
        if problem:
            raise ClaimError(f"claim: {problem}")

    @property
    def years(self) -> tuple[int, int]:
        return self.baseline_year, self.target_year

    def to_dict(self) -> dict[str, Any]:
        """Every field, for ``verdict.json``'s ``claim``."""
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """``'5 of 20 brightened, 15 similar or dimmer'``: the claim's numbers in words."""
        return (
            f"{self.brightened} of {self.n_sites} brightened, "
            f"{self.similar_or_dimmer} similar or dimmer"
        )


DEFAULT_CLAIM = Claim(
    text="Of the 20 sites designated in 2024, only five showed increased night-time luminosity in 2025; "
    "the other fifteen were similar or dimmer than in 2024.",
    source="JoongAng Ilbo, 3 Feb 2026, cited by the EAI commentary of 20 Feb 2026",
    batch="2024",
    baseline_year=2024,
    target_year=2025,
    n_sites=20,
    brightened=5,
    similar_or_dimmer=15,
    url="https://www.koreadaily.com/article/20260203120039065",
    date="2026-02-03",
    notes="Korea Daily mirror of the JoongAng Ilbo article; its night-light passage (product, months, threshold, "
    'the names of the five sites) was not accessible. Repeated by Seung-ho Jung, "The Economic Limits of '
    "the 'Regional Development 20x10 Policy'\", EAI/GlobalNK Commentary, 20 Feb 2026, "
    "https://www.globalnk.org/publication/view.php?cd=COM000219&ctype=1",
    text_ko="2024년에 지정된 20곳 가운데 2025년에 야간 불빛 밝기가 늘어난 곳은 다섯 곳뿐이었고, 나머지 "
    "열다섯 곳은 2024년과 비슷하거나 더 어두웠다.",
    text_ko_is="translation",
)
"""The JoongAng claim, equal to ``claims/joongang-2026-02-03.yaml`` (a test keeps them equal)."""

_FIELDS = {f.name: f for f in dataclasses.fields(Claim)}
_REQUIRED = [n for n, f in _FIELDS.items() if f.default is dataclasses.MISSING]
_INTS = ("baseline_year", "target_year", "n_sites", "brightened", "similar_or_dimmer")
_TEXTS = ("text", "source", "url", "notes", "text_ko")
TEXT_KO_KINDS = ("translation", "quotation")


def default_claim_path() -> Path | None:
    """``claims/<default>`` in the current folder, else next to the package; None if neither."""
    for folder in (Path.cwd() / "claims", Path(pipeline.__file__).resolve().parents[1] / "claims"):
        if (folder / DEFAULT_CLAIM_FILE).is_file():
            return folder / DEFAULT_CLAIM_FILE
    return None


def default_claim() -> Claim:
    """The default claim from its file when there is one, else :data:`DEFAULT_CLAIM`."""
    path = default_claim_path()
    return load_claim(path) if path else DEFAULT_CLAIM


def load_claim(path: Path | str) -> Claim:
    """Read and check a claim file; raise :class:`ClaimError` with one line naming it."""
    path = Path(path)
    if not path.exists():
        raise ClaimError(f"{path}: claim file not found; pass an existing .yaml file to --claim")
    if path.is_dir():
        raise ClaimError(f"{path}: is a folder, expected a claim .yaml file")
    if path.stat().st_size > MAX_CLAIM_BYTES:
        raise ClaimError(
            f"{path}: file is {path.stat().st_size} bytes; a claim file is a few lines of YAML"
        )
    try:
        text = read_text_bounded(
            path, MAX_CLAIM_BYTES
        )  # bounded: a device's size says 0 (/dev/zero)
        if text is None:
            raise ClaimError(
                f"{path}: more than {MAX_CLAIM_BYTES} bytes; a claim file is a few lines of YAML"
            )
    except UnicodeDecodeError as e:
        raise ClaimError(f"{path}: not UTF-8 text; re-save the claim file as UTF-8") from e
    except OSError as e:
        raise ClaimError(
            f"{path}: cannot read claim file ({e.strerror or e.__class__.__name__})"
        ) from e
    data = parse_yaml(text, path, ClaimError, hint="; a claim file is 'key: value' lines")
    return claim_from_mapping(data, str(path))


def claim_from_mapping(data: Any, origin: str) -> Claim:
    """Build a :class:`Claim` from parsed YAML, checking keys, types and numbers."""
    if data is None:
        raise ClaimError(f"{origin}: claim file is empty; it needs {', '.join(_REQUIRED)}")
    if not isinstance(data, dict):
        raise ClaimError(
            f"{origin}: expected a mapping of claim fields (key: value), found {_kind(data)}"
        )
    unknown = [k for k in data if k not in _FIELDS]
    if unknown:
        near = difflib.get_close_matches(str(unknown[0]), _FIELDS, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ClaimError(
            f"{origin}: unknown key {str(unknown[0])[:40]!r}{hint}; valid keys are {', '.join(_FIELDS)}"
        )
    missing = [k for k in _REQUIRED if data.get(k) is None]
    if missing:
        raise ClaimError(
            f"{origin}: missing {', '.join(missing)}; add "
            f"{'it' if len(missing) == 1 else 'them'} (e.g. {missing[0]}: {_example(missing[0])})"
        )
    values: dict[str, Any] = {}
    for key, value in data.items():
        if value is None:
            continue
        if key in _INTS:
            if isinstance(value, bool):
                raise ClaimError(
                    f"{origin}: {key} must be a whole number, found {str(value).lower()} (YAML reads "
                    "yes/no/on/off as true/false); write the number"
                )
            if not isinstance(value, int):
                raise ClaimError(
                    f"{origin}: {key} must be a whole number, found {_kind(value)} {_short(value)}"
                )
        elif key == "batch":
            if (
                isinstance(value, bool)
                or not isinstance(value, str | int)
                or batch_label(value) is None
            ):
                raise ClaimError(
                    f"{origin}: batch must be a label (text or a year, as in the site files' "
                    f"'batch'), found {_kind(value)} {_short(value)}"
                )
            if len(batch_label(value) or "") > MAX_BATCH_CHARS:
                raise ClaimError(
                    f"{origin}: batch label is longer than {MAX_BATCH_CHARS} characters"
                )
            value = batch_label(value)
        elif key in _TEXTS:
            if not isinstance(value, str) or not value.strip():
                raise ClaimError(
                    f"{origin}: {key} must be non-empty text (quote it), found {_kind(value)} {_short(value)}"
                )
            value = " ".join(value.split())
        elif key == "date":
            if isinstance(value, dt.date):
                value = value.isoformat()
            if not isinstance(value, str) or not _DATE_RE.match(value):
                raise ClaimError(
                    f"{origin}: date must be YYYY-MM-DD (or YYYY-MM), found {_short(value)}"
                )
            try:  # the YAML loader keeps dates as text: 2026-02-30 is caught here, naming the key
                dt.date.fromisoformat(value if len(value) == 10 else f"{value}-01")
            except ValueError:
                raise ClaimError(
                    f"{origin}: date {value} is not a calendar date; write YYYY-MM-DD (or YYYY-MM)"
                ) from None
        values[key] = value
    if values.get("text_ko_is") is not None:
        if values["text_ko_is"] not in TEXT_KO_KINDS:
            raise ClaimError(
                f"{origin}: text_ko_is must be {' or '.join(TEXT_KO_KINDS)}, found "
                f"{_short(values['text_ko_is'])}"
            )
        if "text_ko" not in values:
            raise ClaimError(f"{origin}: text_ko_is without text_ko; add text_ko or remove it")
    problem = _consistency_problem(values)
    if problem:
        raise ClaimError(f"{origin}: {problem}")
    return Claim(**values)


def batch_site_count(claim: Claim, sites: pd.DataFrame) -> int:
    """How many sites of the claim's batch the run has."""
    return int(in_batch(sites, claim.batch).sum())


def check_claim_sites(
    claim: Claim, sites: pd.DataFrame, path: Path | str | None = None, *, strict: bool = True
) -> str | None:
    """Can this run's sites judge the claim?

    None when the run has exactly the claim's ``n_sites`` sites of its batch. A one-line
    "not judged" note when it has none (the rest of the run is still useful). A count
    that differs raises :class:`ClaimError` (``strict``: the claim file and the site
    files disagree), or is returned as the note (not strict: e.g. the default claim on a
    subset of sites).
    """
    where = f"{path}: " if path is not None else "claim: "
    n = batch_site_count(claim, sites)
    if n == 0:
        batches = batch_order(batch_labels(sites))
        have = (
            f"the run's sites are of batch {', '.join(batches)}"
            if batches
            else "the run's sites have no batch"
        )
        return (
            f"{where}not judged: the claim is about batch {claim.batch} and no site of that batch is in "
            f"this run ({have}); add its site file with --sites"
        )
    if n != claim.n_sites:
        line = (
            f"{where}n_sites={claim.n_sites}, but the run has {n} site(s) of batch {claim.batch}; "
            "correct n_sites or pass the site files that hold the whole batch"
        )
        if strict:
            raise ClaimError(line)
        return line
    return None


def _short(value: Any) -> str:
    """A value as it may appear in a one-line message: its repr, cut at 60 characters."""
    try:
        text = repr(value)
    except ValueError:  # an integer too long for Python to print
        return f"<a number of {value.bit_length()} bits>"
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    return {
        "str": "text",
        "int": "number",
        "float": "number",
        "bool": "true/false",
        "list": "a list",
        "dict": "a mapping",
        "NoneType": "nothing",
    }.get(type(value).__name__, type(value).__name__)


def _example(key: str) -> str:
    return {
        "text": "'Of the 20 sites ...'",
        "source": "'Newspaper, date'",
        "batch": "2024",
        "baseline_year": "2024",
        "target_year": "2025",
        "n_sites": "20",
        "brightened": "5",
    }[key]
