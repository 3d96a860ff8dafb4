"""Style: one look for every chart, sized for print, honest about its data.

Inputs
    A :class:`Style` (paper or slide, width in mm, dpi, language) and the verdict mapping.
Outputs
    Matplotlib rc settings, fixed class colours and markers, the credit line, the
    synthetic-data mark, and :func:`save` writing PNG/SVG/PDF with reproducible bytes.

Colours are Paul Tol's colour-blind-safe "vibrant" and "bright" schemes; each class keeps
its colour *and* its marker in every chart, so a black-and-white print still separates
them. With ``SOURCE_DATE_EPOCH`` set, two runs write byte-identical files (dates come from
it, SVG ids from a fixed salt).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
from matplotlib import font_manager
from matplotlib.layout_engine import ConstrainedLayoutEngine

from pipeline import __version__
from pipeline.config import CHART_DPI, CHART_FORMATS, CHART_WIDTH_MM
from pipeline.errors import ConfigError
from pipeline.judge.change import CLASSES

MM_PER_INCH = 25.4
MPLSTYLE = Path(__file__).with_name("nightlights.mplstyle")
FORMATS = CHART_FORMATS

# Paul Tol, "vibrant" (orange, blue) and "bright" (grey) schemes.
CLASS_COLORS = {
    "brightened": "#EE7733",
    "unchanged": "#BBBBBB",
    "dimmed": "#0077BB",
    "insufficient_data": "#FFFFFF",
}
CLASS_MARKERS = {"brightened": "^", "unchanged": "o", "dimmed": "v", "insufficient_data": "s"}
CLASS_ORDER = CLASSES  # legend and table order
SYNTHETIC_COLOR = "#CC3311"  # Tol vibrant red
BAND_COLOR = "#E8E8E8"
CLAIM_COLOR = "#EE3377"  # Tol vibrant magenta
BASELINE_SHADE = "#DDDDDD"
TARGET_SHADE = "#FBE3D1"
INVALID_HATCH_COLOR = "#999999"
# Batches on maps: one marker each, in batch order (class is the colour there); none is a class marker.
# Sites without a batch get the plain circle, which no batch uses.
BATCH_MARKERS = ("s", "D", "p", "h", "P", "X", "*", "d")
NO_BATCH_MARKER = "o"
BORDER_COLORS = {"country": "#000000", "province": "#555555", "county": "#9A9A9A"}
# Paul Tol's diverging "BuRd" (blue: dimmer, red: brighter), for the county change
DIVERGING = (
    "#2166AC",
    "#4393C3",
    "#92C5DE",
    "#D1E5F0",
    "#F7F7F7",
    "#FDDBC7",
    "#F4A582",
    "#D6604D",
    "#B2182B",
)

KO_FONT_PACKAGE = "pylopdf_fonts_ko"  # Noto Sans KR, SIL Open Font License 1.1
KO_FONT_FILE = "NotoSansKR-Regular.otf"

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "brightened": "brightened",
        "unchanged": "unchanged",
        "dimmed": "dimmed",
        "insufficient_data": "insufficient data",
        "change_axis": "Change in night-time radiance, {b} to {t}",
        "threshold_band": "within {pct} (threshold)",
        "claim": "claim",
        "counts_title": "{label}: {up} brightened, {rest} similar or dimmer (claim: {k} and {rest_k})",
        "sites": "sites",
        "radiance": "Radiance (nW/cm²/sr)",
        "baseline": "baseline {y}",
        "target": "target {y}",
        "groundbreaking": "groundbreaking",
        "inauguration": "inauguration",
        "invalid": "no valid observation",
        "off_map": "Off the map (outside the rasters; insufficient data): {ids}",
        "map_title": "Sites over the {y} mean night-light composite",
        "composite": "Mean radiance {y}, valid months (nW/cm²/sr)",
        "lon": "Longitude (°E)",
        "lat": "Latitude (°N)",
        "before_after": "Mean of valid months, {b} and {t}",
        "variants": "Method variants",
        "n_brightened": "Sites brightened (of {n})",
        "headline": "this run",
        "robust_title": "Brightened count over {n} method variants",
        "by_choice": "Range over the other choices",
        "batch_label": "{name} sites",
        "insufficient_short": "insufficient data",
        "synthetic": "SYNTHETIC DATA",
        "synthetic_note": "SYNTHETIC DEMO DATA: not evidence about North Korea",
        "months": "months",
        "log_note": " (log scale; bars: 95% interval)",
        "site": "site",
        "ring": "background ring",
        "dot_median": " (dot: median)",
        "batch_n": "{name} ({n})",
        "batch_year": "batch {batch}",
        "batch_text": "batch “{batch}”",
        "batch_none": "no batch",
        "other_sites": "other sites",
        "n_class": "{n} {cls}",
        "other_title": "Other sites, not in the claim's {name} ({n}):{sep}{counts}",
        "borders": "country, province, county borders",
        "county_title": "Change in light by county, {b} to {t}",
        "county_axis": "Change of county mean radiance, {b} to {t} (valid months in both years)",
        "no_county_data": "no matched valid month",
        "event_title": "Site light around each inauguration, against counties without a site",
        "event_x": "Months from the inauguration",
        "event_y": "Sites relative to control counties\n(0 = mean of the 12 months before)",
        "event_band": "95% interval over sites",
        "event_est": "mean over sites",
        "n_sites": "sites with data",
        "event_y_short": "Sites vs control counties",
        "n_sites_short": "sites",
        "event_ref": "0 = the sites' mean of the 12 months before",
        "lorenz_title": "How unequally light is spread over {n} counties",
        "lorenz_x": "Share of counties, darkest first",
        "lorenz_y": "Share of all light",
        "equality": "equal spread",
        "lorenz_year": "{y} (Gini {g:.2f})",
        "placebo_title": "Designated counties against {n} random sets of other counties",
        "placebo_x": "Change of light, designated minus others, {b} to {t}",
        "placebo_y": "random sets",
        "placebo_est": "designated counties: {est} (p {p})",
    },
    "ko": {
        "brightened": "밝아짐",
        "unchanged": "변화 없음",
        "dimmed": "어두워짐",
        "insufficient_data": "자료 부족",
        "change_axis": "야간 복사휘도 변화, {b}년 대비 {t}년",
        "threshold_band": "{pct} 이내 (임계값)",
        "claim": "주장",
        "counts_title": "{label}: {up}곳 밝아짐, {rest}곳 비슷하거나 어두워짐 (주장: {k}곳과 {rest_k}곳)",
        "sites": "지점",
        "radiance": "복사휘도 (nW/cm²/sr)",
        "baseline": "기준 {y}년",
        "target": "비교 {y}년",
        "groundbreaking": "착공",
        "inauguration": "준공",
        "invalid": "유효 관측 없음",
        "off_map": "지도 밖 (래스터 범위 밖; 자료 부족): {ids}",
        "map_title": "{y}년 평균 야간 조도 영상 위의 지점",
        "composite": "{y}년 유효 월 평균 복사휘도 (nW/cm²/sr)",
        "lon": "경도 (°E)",
        "lat": "위도 (°N)",
        "before_after": "{b}년과 {t}년 유효 월 평균",
        "variants": "방법 변형 수",
        "n_brightened": "밝아진 지점 수 ({n}곳 중)",
        "headline": "이번 분석",
        "robust_title": "방법 변형 {n}가지에 따른 밝아진 지점 수",
        "by_choice": "다른 선택에 대한 범위",
        "batch_label": "{name} 지점",
        "insufficient_short": "자료 부족",
        "synthetic": "SYNTHETIC DATA 합성 데이터",
        "synthetic_note": "합성 데모 데이터 (SYNTHETIC): 북한에 대한 증거가 아님",
        "months": "월",
        "log_note": " (로그 눈금, 막대: 95% 구간)",
        "site": "지점",
        "ring": "주변 고리 (배경)",
        "dot_median": " (점: 중앙값)",
        "batch_n": "{name} ({n})",
        "batch_year": "{batch}년 지정",
        "batch_text": "‘{batch}’ 묶음",
        "batch_none": "묶음 없음",
        "other_sites": "다른 지점",
        "n_class": "{n}곳 {cls}",
        "other_title": "주장의 {name} 밖의 다른 지점 ({n}곳):{sep}{counts}",
        "borders": "국경, 도, 군 경계",
        "county_title": "군별 야간 조도 변화, {b}년 대비 {t}년",
        "county_axis": "군 평균 복사휘도 변화, {b}년 대비 {t}년 (두 해 모두 유효한 월)",
        "no_county_data": "대응 유효 월 없음",
        "event_title": "준공 전후 지점의 야간 조도, 지정 지점이 없는 군과 비교",
        "event_x": "준공 후 개월 수",
        "event_y": "대조 군 대비 지점 조도\n(0 = 준공 전 12개월 평균)",
        "event_band": "지점 간 95% 구간",
        "event_est": "지점 평균",
        "n_sites": "자료가 있는 지점 수",
        "event_y_short": "대조 군 대비 지점 조도",
        "n_sites_short": "지점 수",
        "event_ref": "0 = 준공 전 12개월 평균",
        "lorenz_title": "{n}개 군에 걸친 야간 조도 분포의 불평등",
        "lorenz_x": "군 누적 비율 (어두운 군부터)",
        "lorenz_y": "전체 조도 누적 비율",
        "equality": "균등 분포",
        "lorenz_year": "{y}년 (지니 {g:.2f})",
        "placebo_title": "지정 군과 다른 군 {n}개 무작위 조합의 비교",
        "placebo_x": "조도 변화 차이 (지정 군 - 다른 군), {b}년 대비 {t}년",
        "placebo_y": "무작위 조합 수",
        "placebo_est": "지정 군: {est} (p {p})",
    },
}

PRODUCTS = {
    "eog-vcmslcfg": "EOG VIIRS DNB monthly composites VNL v10 (vcmslcfg, stray-light corrected)",
    "eog-vcmcfg": "EOG VIIRS DNB monthly composites VNL v10 (vcmcfg)",
    "VNP46A3": "NASA Black Marble VNP46A3 monthly (Suomi NPP)",
    "VJ146A3": "NASA Black Marble VJ146A3 monthly (NOAA-20)",
    "eog-annual-vcmslcfg": "EOG VIIRS DNB annual composites VNL v2 (vcmslcfg, average_masked)",
    "eog-annual-vcmcfg": "EOG VIIRS DNB annual composites VNL v2 (vcmcfg, average_masked)",
    "VNP46A4": "NASA Black Marble VNP46A4 annual (Suomi NPP)",
    "VJ146A4": "NASA Black Marble VJ146A4 annual (NOAA-20)",
    "geotiff": "user-supplied monthly GeoTIFFs",
}


@dataclass(frozen=True)
class Style:
    """What the user chooses for a set of charts (``nightlights figures`` options)."""

    kind: str = "paper"  # paper | slide
    width_mm: float = CHART_WIDTH_MM
    dpi: int = CHART_DPI
    lang: str = "en"
    formats: tuple[str, ...] = FORMATS

    @property
    def width_in(self) -> float:
        return self.width_mm / MM_PER_INCH

    @property
    def base_size(self) -> float:
        return 7.0 if self.kind == "paper" else 12.0

    @property
    def small_size(self) -> float:
        return self.base_size - (1.0 if self.kind == "paper" else 2.0)

    def scale(self, size: float) -> float:
        """Marker sizes grow with the slide fonts."""
        return size if self.kind == "paper" else size * 1.6

    def label(self, key: str, **kw: Any) -> str:
        return LABELS[self.lang][key].format(**kw)

    def batch_name(self, label: str | None) -> str:
        """A batch label in words: 'batch 2024' / '2024년 지정', 'batch “pilot”', 'no batch'.
        (Only the wording looks at whether the label is a year; no analysis does.)"""
        if label is None:
            return self.label("batch_none")
        return self.label(
            "batch_year" if str(label).isdigit() and len(str(label)) == 4 else "batch_text",
            batch=label,
        )

    def legend_columns(self, n: int) -> int:
        """As many legend columns as fit the width (about 30 mm each on paper)."""
        return max(1, min(n, int(self.width_mm // (30 if self.kind == "paper" else 45))))


def korean_font_path() -> Path | None:
    """Noto Sans KR shipped by the ``pylopdf-fonts-ko`` package (installed by ``make install``)."""
    spec = importlib.util.find_spec(KO_FONT_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / KO_FONT_FILE
    return path if path.exists() else None


@cache
def _register_korean_font() -> str | None:
    path = korean_font_path()
    if path is None:
        return None
    font_manager.fontManager.addfont(str(path))
    entry = font_manager.fontManager.ttflist[-1]
    # The package ships one weight; let titles asked in bold use it instead of warning at every draw.
    font_manager.fontManager.ttflist.append(dataclasses.replace(entry, weight=700))
    return entry.name


def rc_params(style: Style) -> dict[str, Any]:
    """Matplotlib settings for ``style``: sizes in points, text kept as text, fixed ids."""
    family = ["DejaVu Sans"]
    if style.lang == "ko":
        ko = _register_korean_font()
        if ko is None:
            raise ConfigError(
                f"--lang ko needs the Korean font package '{KO_FONT_PACKAGE}'; run 'make install'"
            )
        family = [ko, "DejaVu Sans"]
    b, s = style.base_size, style.small_size
    lw = 0.6 if style.kind == "paper" else 1.0
    return {
        **_fixed_rc(),
        "font.sans-serif": family,
        "font.size": b,
        "axes.titlesize": b,
        "axes.labelsize": b,
        "xtick.labelsize": s,
        "ytick.labelsize": s,
        "legend.fontsize": s,
        "figure.titlesize": b + 1,
        "axes.linewidth": lw,
        "lines.linewidth": lw * 1.6,
        "xtick.major.width": lw,
        "ytick.major.width": lw,
        "savefig.dpi": style.dpi,
    }


@cache
def _fixed_rc() -> dict[str, Any]:
    """The settings of the shipped ``nightlights.mplstyle`` (the part that no Style option changes)."""
    params = matplotlib.rc_params_from_file(str(MPLSTYLE), use_default_template=False)
    return {str(k): params[k] for k in params}


@contextmanager
def styled(style: Style) -> Iterator[None]:
    with plt.rc_context(rc_params(style)):  # type: ignore[arg-type]  # stubs list literal keys only
        yield


def source_date() -> datetime | None:
    """The build date from ``SOURCE_DATE_EPOCH`` (reproducible builds), if set."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return None
    try:
        return datetime.fromtimestamp(int(epoch), tz=UTC)
    except ValueError:
        raise ConfigError(
            f"SOURCE_DATE_EPOCH={epoch!r} is not a Unix time in seconds; unset it or fix it"
        ) from None


def is_synthetic(verdict: dict[str, Any]) -> bool:
    return verdict.get("data_kind") == "synthetic"


def describe_products(products: Iterable[str], synthetic: bool) -> str:
    names = sorted({PRODUCTS.get(p, p) for p in products})
    text = "; ".join(names) or "monthly night-light rasters"
    return f"synthetic demo rasters imitating {text}" if synthetic else text


def credit_line(verdict: dict[str, Any]) -> str:
    """Product, period and processing, printed under every chart (``verdict["credit"]`` replaces it)."""
    if verdict.get("credit"):
        return str(verdict["credit"])
    inputs = verdict.get("inputs") or []
    months = sorted(i["month"] for i in inputs)
    period = f"{months[0]} to {months[-1]}" if months else "period unknown"
    product = describe_products((i["product"] for i in inputs), is_synthetic(verdict))
    p = verdict.get("parameters", {})
    return (
        f"Data: {product}, {period}. Processing: nightlights {verdict.get('nightlights_version') or __version__}, "
        f"exact coverage-weighted site means, {p.get('statistic', 'median')} of matched valid months, "
        f"threshold |ln ratio| ≥ {p.get('threshold', float('nan')):g} with 95% bootstrap interval."
    )


def finish(fig: plt.Figure, verdict: dict[str, Any], style: Style) -> plt.Figure:
    """Add the credit line and, for synthetic data, the visible mark; keep both clear of the axes.

    The credit line sits at the bottom, the figure legend (if any) just above it, the
    synthetic note at the top; the layout's rectangle leaves their measured heights free.
    """
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg canvases have it (files only)
    h = fig.get_figheight()
    pad = 3 / 72
    credit = fig.text(
        0.005,
        pad / h,
        credit_line(verdict),
        fontsize=style.small_size - 1,
        color="#444444",
        ha="left",
        va="bottom",
        wrap=True,
        gid="credit",
    )
    bottom = credit.get_window_extent(renderer).height / fig.dpi + 2 * pad
    for leg in fig.legends:
        leg.set_loc("lower center")
        leg.set_bbox_to_anchor((0.5, bottom / h), transform=fig.transFigure)
        bottom += leg.get_window_extent(renderer).height / fig.dpi + pad
    top = 0.0
    if is_synthetic(verdict):
        mark = style.label("synthetic")
        fit = (
            0.8 * fig.get_figwidth() * 72 / (0.68 * len(mark) * 0.906)
        )  # 0.906 = cos 25°, 0.68 em per glyph
        fig.text(
            0.5,
            0.5,
            mark,
            ha="center",
            va="center",
            rotation=25,
            fontsize=min(style.base_size * 5, fit),
            color=SYNTHETIC_COLOR,
            alpha=0.16,
            weight="bold",
            zorder=100,
            gid="synthetic-watermark",
        )
        note = fig.text(
            0.004,
            1 - pad / h,
            style.label("synthetic_note"),
            ha="left",
            va="top",
            fontsize=style.small_size,
            color="white",
            weight="bold",
            gid="synthetic-note",
            zorder=101,
            bbox={"boxstyle": "square,pad=0.25", "fc": SYNTHETIC_COLOR, "ec": "none"},
        )
        top = note.get_window_extent(renderer).height / fig.dpi + 2 * pad
    engine = fig.get_layout_engine()
    if isinstance(engine, ConstrainedLayoutEngine):
        engine.set(rect=(0, bottom / h, 1, 1 - (bottom + top) / h))
    return fig


_HASHED_ID = re.compile(r'id="((?:p|m|h|image)[0-9a-f]{10})"')


def stable_svg_ids(svg: str) -> str:
    """Number Matplotlib's hashed SVG ids (clip paths, markers, hatches, images) in order of appearance.

    The hashes include layout floats whose last bits can vary between runs (the order in which
    Matplotlib sums them), which would break byte-identical output; sequential ids do not.
    """
    ids = dict.fromkeys(_HASHED_ID.findall(svg))
    if not ids:
        return svg
    new = {
        old: f"{old[0] if not old.startswith('image') else 'img'}{i:04d}"
        for i, old in enumerate(ids)
    }
    pattern = re.compile(
        r'(?<=id=")(' + "|".join(ids) + r')(?=")|(?<=#)(' + "|".join(ids) + r')(?=[)"])'
    )
    return pattern.sub(lambda m: new[m.group(0)], svg)


def save(
    fig: plt.Figure, base: Path, style: Style, verdict: dict[str, Any], title: str
) -> list[Path]:
    """Write ``base.<fmt>`` for each format; metadata names the data kind and the software."""
    written = []
    date = source_date()
    software = f"nightlights {__version__} (matplotlib {matplotlib.__version__})"
    subject = (
        "SYNTHETIC DEMO DATA - not evidence about any place"
        if is_synthetic(verdict)
        else "VIIRS night lights"
    )
    for fmt in style.formats:
        path = base.with_suffix(f".{fmt}")
        if fmt == "png":
            meta: dict[str, Any] = {"Software": software, "Title": title, "Description": subject}
        elif fmt == "pdf":
            meta = {
                "Creator": software,
                "Producer": software,
                "Title": title,
                "Subject": subject,
                "CreationDate": date,
            }
        elif fmt == "svg":
            meta = {
                "Creator": software,
                "Title": title,
                "Description": subject,
                "Date": date.strftime("%Y-%m-%dT%H:%M:%SZ") if date else None,
            }
        else:
            raise ValueError(f"unknown format {fmt}")
        fig.savefig(
            path, format=fmt, dpi=style.dpi, metadata=meta
        )  # callers write into a staging folder
        if fmt == "svg":
            path.write_text(stable_svg_ids(path.read_text(encoding="utf-8")), encoding="utf-8")
        written.append(path)
    plt.close(fig)
    return written


def style_from_options(formats: str, dpi: int, kind: str, width_mm: float, lang: str) -> Style:
    """A :class:`Style` from the ``figures`` options, each checked with a message naming its flag."""
    chosen = tuple(f.strip().lower() for f in str(formats).split(",") if f.strip())
    bad = [f for f in chosen if f not in FORMATS]
    if bad or not chosen:
        raise ConfigError(f"--format {formats}: use a comma-separated list of {', '.join(FORMATS)}")
    if not 50 <= dpi <= 2400:
        raise ConfigError(f"--dpi {dpi}: use a value between 50 and 2400 (300 for print)")
    if not 40 <= width_mm <= 600:
        raise ConfigError(
            f"--width-mm {width_mm:g}: use a width between 40 and 600 mm (89 or 183 for journals)"
        )
    return Style(kind=kind, width_mm=float(width_mm), dpi=int(dpi), lang=lang, formats=chosen)
