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
import io
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import font_manager
from matplotlib.layout_engine import ConstrainedLayoutEngine, PlaceHolderLayoutEngine
from matplotlib.transforms import Bbox
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from pipeline import __version__
from pipeline.config import CHART_DPI, CHART_FORMATS, CHART_WIDTH_MM
from pipeline.errors import ConfigError
from pipeline.judge.change import CLASSES
from pipeline.words import batch_name, say, say_value, synthetic_notice

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
        """A chart's words in the chart's language (:mod:`pipeline.words`, the one table)."""
        return say(key, self.lang, **kw)

    def batch_name(self, label: str | None) -> str:
        """A batch label in words: 'batch 2024' / '2024년 지정', 'batch “pilot”', 'no batch'."""
        return batch_name(label, self.lang)

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


def is_synthetic(verdict: Mapping[str, Any]) -> bool:
    return verdict.get("data_kind") == "synthetic"


def describe_products(products: Iterable[str], synthetic: bool, lang: str = "en") -> str:
    """The products' names in words (``product_<id>`` in :mod:`pipeline.words`; an unknown id as it is)."""
    names = sorted({say_value("product", p, lang) for p in products})
    text = "; ".join(names) or say("product_none", lang)
    return say("product_demo", lang, products=text) if synthetic else text


def period_text(months: Iterable[str], lang: str = "en") -> str:
    """'2023-01 to 2025-12' / '2023-01~2025-12' over the months given, or 'period unknown'."""
    ordered = sorted(months)
    return (
        say("period", lang, a=ordered[0], b=ordered[-1]) if ordered else say("period_unknown", lang)
    )


def credit_line(verdict: Mapping[str, Any], lang: str = "en") -> str:
    """Product, period and processing, printed under every chart (``verdict["credit"]``, a mapping
    from language to line, replaces it: the comparison charts have their own)."""
    own = verdict.get("credit")
    if own:
        return str(own.get(lang) or own.get("en")) if isinstance(own, dict) else str(own)
    inputs = verdict.get("inputs") or []
    p = verdict.get("parameters", {})
    return say(
        "credit",
        lang,
        product=describe_products((i["product"] for i in inputs), is_synthetic(verdict), lang),
        period=period_text((i["month"] for i in inputs), lang),
        version=verdict.get("nightlights_version") or __version__,
        statistic=say_value("stat", p.get("statistic", "median"), lang),
        threshold=f"{p.get('threshold', float('nan')):g}",
    )


def finish(fig: plt.Figure, verdict: Mapping[str, Any], style: Style) -> plt.Figure:
    """Add the credit line and, for synthetic data, the visible mark; keep both clear of the axes.

    The credit line sits at the bottom, the figure legend (if any) just above it, the
    synthetic note at the top; the layout's rectangle leaves their measured heights free.
    """
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg canvases have it (files only)
    # a title or axis label wider than the figure breaks into lines, never leaves it
    for ax in fig.axes:
        sides = [getattr(ax, f"_{loc}_title") for loc in ("left", "right")]  # no public getter
        for text in (ax.title, *sides, ax.xaxis.label, ax.yaxis.label):
            # Matplotlib's wrapping measures each piece as mathtext whenever it holds "$", ignoring
            # text.parse_math=False (text.py, _get_rendered_text_width), so a site name such as
            # "$\undefinedmacro$" would fail to draw: such a title is left unwrapped
            text.set_wrap("$" not in text.get_text())
    h = fig.get_figheight()
    pad = 3 / 72
    credit = fig.text(
        0.005,
        pad / h,
        credit_line(verdict, style.lang),
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
        mark = style.label("synthetic_mark")
        # 0.906 = cos 25°; a Latin glyph is about 0.68 em wide, a hangul one a whole em
        ems = sum(1.0 if unicodedata.east_asian_width(ch) in "WF" else 0.68 for ch in mark)
        fit = 0.8 * fig.get_figwidth() * 72 / (ems * 0.906)
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
            synthetic_notice(style.lang),
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
# such an id where it is referred to (url(#...), xlink:href="#..."); each pattern begins with
# its own literal, so the scan skips ahead to it (an alternation of the two, or a look-behind,
# is 20 times slower on a map's 6.7 MB of SVG)
_REFERENCE = re.compile(r'#((?:p|m|h|image)[0-9a-f]{10})(?=[)"])')


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
    svg = _HASHED_ID.sub(lambda m: f'id="{new[m[1]]}"', svg)
    return _REFERENCE.sub(lambda m: "#" + new.get(m[1], m[1]), svg)


@contextmanager
def one_layout(fig: plt.Figure, dpi: float) -> Iterator[None]:
    """Lay ``fig`` out once, as saving a PNG at ``dpi`` does, and save every format in the block
    from that layout.

    Matplotlib runs a figure's layout engine (constrained layout: most of a chart's drawing
    time) in a dry draw before every ``savefig``; a figure without an engine is drawn once per
    format. So the layout is made here with the PNG's renderer, exactly as the PNG's own
    ``savefig`` would (same bytes), and the engine removed for the block; SVG and PDF share it
    (each format used to be laid out again with its own text metrics).
    """
    engine = fig.get_layout_engine()
    if engine is not None and not isinstance(engine, PlaceHolderLayoutEngine):
        screen = fig.dpi
        fig.dpi = dpi  # as savefig sets it while it draws
        try:
            fig.draw_without_rendering()
        finally:
            fig.dpi = screen
        snap_layout(fig)
    # Not "none" (a placeholder engine still dry-draws), and with the rc off: savefig restores
    # the engine it found, and None would otherwise mean "constrained" again under our style.
    with plt.rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
        fig.set_layout_engine(None)
        yield


LAYOUT_GRID = 2.0**-24  # of the figure's width or height: some tens of nanometres on paper


def snap_layout(fig: plt.Figure) -> None:
    """Round every Axes' laid-out position to :data:`LAYOUT_GRID` (a fraction of the figure).

    Constrained layout's solver gives positions whose last bits differ from one process to the
    next (up to ~30 units in the last place): enough to change a PDF coordinate's tenth decimal
    now and then. Rounded, the layout is the same in every process, so charts drawn in worker
    processes are byte-identical to charts drawn here; nothing moves by more than 1/10,000 of
    a pixel at 300 dpi.
    """
    for ax in fig.axes:
        x0, y0, x1, y1 = (
            round(v / LAYOUT_GRID) * LAYOUT_GRID for v in ax.get_position(True).extents
        )
        ax.set_position(Bbox([[x0, y0], [x1, y1]]), which="both")


def save(
    fig: plt.Figure, base: Path, style: Style, verdict: Mapping[str, Any], title: str
) -> list[Path]:
    """Write ``base.<fmt>`` for each format from one layout (:func:`one_layout`); metadata names
    the data kind and the software."""
    with one_layout(fig, style.dpi):
        return _save(fig, base, style, verdict, title)


def _save(
    fig: plt.Figure, base: Path, style: Style, verdict: Mapping[str, Any], title: str
) -> list[Path]:
    written = []
    date = source_date()
    software = f"nightlights {__version__} (matplotlib {matplotlib.__version__})"
    subject = synthetic_notice(style.lang) if is_synthetic(verdict) else "VIIRS night lights"
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
        # callers write into a staging folder
        if fmt == "png":
            save_png(fig, path, style.dpi, meta)
        else:
            fig.savefig(path, format=fmt, dpi=style.dpi, metadata=meta)
        if fmt == "svg":
            path.write_text(stable_svg_ids(path.read_text(encoding="utf-8")), encoding="utf-8")
        written.append(path)
    plt.close(fig)
    return written


class _Pixels(io.BytesIO):
    """A file for ``savefig(format="rgba")`` keeping Agg's buffer, which comes as one write of
    a (height, width, 4) memoryview, with its shape (sizes in pixels are Agg's own)."""

    array: np.ndarray

    def write(self, data: Any) -> int:
        self.array = np.array(data, dtype=np.uint8)  # a copy: the renderer is reused
        if self.array.ndim != 3 or self.array.shape[2] != 4:
            raise RuntimeError(f"expected Agg's RGBA buffer, got shape {self.array.shape}")
        return self.array.nbytes


PNG_COMPRESSION = 3  # zlib level (Pillow's default: 6)


def save_png(
    fig: plt.Figure, target: Path | BinaryIO, dpi: float, metadata: Mapping[str, str]
) -> None:
    """Save ``fig`` as a PNG, as ``savefig`` would (same pixels, metadata and resolution), but
    in RGB when every pixel is opaque (charts on their white page; RGBA otherwise) and at zlib
    level :data:`PNG_COMPRESSION`.

    Matplotlib writes RGBA at level 6, and the encoder was the largest single cost of drawing the
    charts again (a seventh of it). On the demo's charts RGB at level 3 encodes in 40-60 % of the
    time into files no larger (the map: 0.53 s, 2.51 MB before; 0.21 s, 2.32 MB now), and print
    workflows expect no alpha channel.
    """
    pixels = _Pixels()
    fig.savefig(pixels, format="rgba", dpi=dpi)  # Agg's drawing, as for a PNG
    image = Image.fromarray(pixels.array)
    if pixels.array[..., 3].min() == 255:
        image = image.convert("RGB")
    info = PngInfo()
    for key, value in metadata.items():
        info.add_text(key, value)
    image.save(target, format="png", pnginfo=info, dpi=(dpi, dpi), compress_level=PNG_COMPRESSION)


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
