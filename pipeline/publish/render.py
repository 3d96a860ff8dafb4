"""Rendering: each chart drawn once for all its formats, charts in parallel processes, and a chart
whose inputs did not change kept as it is.

Inputs
    :class:`Chart` specs (a pure chart function, how to get its data, what its files are made of),
    a :class:`~pipeline.publish.style.Style`, the data kind (file metadata) and the staging folder
    (:class:`pipeline.outputs.Staging`).
Outputs
    ``<folder>/<name>.<format>`` in the staging folder (``figures/`` for English, ``figures/ko/``
    for Korean: one folder per language, so no language overwrites another's charts), each with
    its content key recorded in the list of outputs; each chart's PNG bytes for the report; each
    chart's drawing time.

A chart's content key is a SHA-256 of everything its files are made of: the data it draws (tables,
raster checksums, boundary files), the verdict, the style (kind, width, dpi, language), the code and
library versions and ``SOURCE_DATE_EPOCH``. When ``--out`` holds a chart's files as an earlier run
wrote them from the same key, they are carried into the new set unchanged (hard links: same bytes,
same modification time). The other charts are drawn by worker processes (spawned: a worker knows
only what it is sent), the heaviest first, or in this process with ``jobs=1``; the bytes are the
same either way. Each figure is laid out once and every format saved from that layout. Several
chart sets (one per language) share one pool of workers (:func:`draw_sets`), so a second language
costs its drawing time, not a second start of the workers.
"""

from __future__ import annotations

import hashlib
import io
import logging
import multiprocessing
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from pipeline import __version__
from pipeline.digest import code_digest, feed, library_versions
from pipeline.errors import ConfigError, NightlightsError
from pipeline.publish.style import Style, one_layout, save, save_png, styled

log = logging.getLogger(__name__)

KEY_VERSION = 1  # bump when what a key covers changes
LIBRARIES = ("matplotlib", "numpy", "pandas", "pillow", "fonttools", "shapely", "pylopdf-fonts-ko")


@dataclass(frozen=True)
class Chart:
    """One chart: ``draw(*data())`` makes its figure (or None: nothing to draw)."""

    name: str
    draw: Callable[..., Any]  # a module-level function of plain data (a worker gets it by name)
    data: Callable[[], tuple[Any, ...] | None]  # its arguments, made in this process when needed
    depends: tuple[Any, ...]  # what its files are made of besides the style (hashed)
    cost: float = 1.0  # rough drawing time: the heaviest start first


@dataclass
class Drawn:
    """What publishing the charts gave: PNG bytes for the report, in chart order, and timings."""

    pngs: dict[str, bytes] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # drawn charts only
    kept: list[str] = field(default_factory=list)  # charts carried over unchanged


@dataclass(frozen=True)
class ChartSet:
    """Charts drawn in one style into one folder of the output (``figures``, ``figures/ko``)."""

    charts: list[Chart]
    style: Style
    folder: str = "figures"


@dataclass(frozen=True)
class _Job:
    index: int  # which chart set
    name: str
    draw: Callable[..., Any]
    args: tuple[Any, ...]
    style: Style
    data_kind: str | None
    base: Path  # staging path without the format suffix
    report_png: bool  # no PNG file asked: make the report's PNG anyway
    source_date_epoch: str | None


@dataclass(frozen=True)
class _Result:
    index: int
    name: str
    png: bytes | None  # None: the chart had nothing to draw
    seconds: float
    warnings: tuple[tuple[str, type[Warning], str, int], ...] = ()
    logs: tuple[tuple[str, int, str], ...] = ()


# --------------------------------------------------------------------------- content keys


def content_key(name: str, depends: tuple[Any, ...], style: Style) -> str:
    """SHA-256 of what chart ``name`` is made of: its inputs, the style (formats aside: each file
    is recorded on its own), the code, the libraries and ``SOURCE_DATE_EPOCH``."""
    h = hashlib.sha256()
    look = {f.name: getattr(style, f.name) for f in fields(style) if f.name != "formats"}
    feed(h, ("nightlights chart", KEY_VERSION, name, environment(), look, depends))
    return h.hexdigest()


def environment() -> tuple[Any, ...]:
    return (
        __version__,
        code_digest(),
        library_versions(LIBRARIES),
        os.environ.get("SOURCE_DATE_EPOCH"),
    )


# --------------------------------------------------------------------------- saying what it does


class stage:
    """A step of publishing that says what it is doing once it has taken ``after`` seconds (a line
    on the log, from a timer: short steps say nothing); silent without ``progress`` (``-q``)."""

    def __init__(self, what: str, progress: bool, after: float = 2.0):
        self.what, self.progress, self.after = what, progress, after
        self.timer: threading.Timer | None = None

    def __enter__(self) -> stage:
        if self.progress:
            self.start = time.perf_counter()
            self.timer = threading.Timer(self.after, log.info, ("%s ...", self.what))
            self.timer.daemon = True
            self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.timer is not None:
            self.timer.cancel()
            took = time.perf_counter() - self.start
            if took >= self.after:
                log.info("%s: %.1f s", self.what, took)


# --------------------------------------------------------------------------- drawing


# the default of --jobs, e.g. 1 where worker processes cost more than they save (the test suite)
JOBS_ENV = "NIGHTLIGHTS_JOBS"


def default_jobs() -> int:
    """``$NIGHTLIGHTS_JOBS``, else one process per core."""
    raw = os.environ.get(JOBS_ENV, "").strip()
    if not raw:
        return available_cores()
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{JOBS_ENV}={raw!r}: give a whole number of processes, 1 or more")
    return int(raw)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def draw_charts(
    charts: list[Chart],
    style: Style,
    out: Any,
    data_kind: str | None,
    jobs: int | None = None,
    progress: bool = False,
    folder: str = "figures",
) -> Drawn:
    """Every chart into ``out``'s ``folder``: kept when unchanged, else drawn (``jobs`` processes;
    default ``$NIGHTLIGHTS_JOBS`` or one per core, at most one per chart; 1: in this process)."""
    return draw_sets([ChartSet(charts, style, folder)], out, data_kind, jobs, progress)[0]


def draw_sets(
    sets: list[ChartSet],
    out: Any,
    data_kind: str | None,
    jobs: int | None = None,
    progress: bool = False,
) -> list[Drawn]:
    """Several chart sets (e.g. English and Korean), each as :func:`draw_charts` draws one, by one
    pool of workers; a :class:`Drawn` per set, in order."""
    from tqdm.auto import tqdm

    done = [Drawn() for _ in sets]
    keys = [{c.name: content_key(c.name, c.depends, cs.style) for c in cs.charts} for cs in sets]
    todo = [
        (i, c)
        for i, cs in enumerate(sets)
        for c in cs.charts
        if not _keep(c.name, keys[i][c.name], cs.style, out, done[i], cs.folder)
    ]
    bar = tqdm(
        total=sum(len(cs.charts) for cs in sets),
        desc="charts",
        unit="chart",
        disable=not progress,
        leave=False,
        initial=sum(len(d.kept) for d in done),
    )
    # the heaviest first (stable: equal costs keep their order); a chart's cost grows with its formats
    todo.sort(key=lambda ic: -ic[1].cost * (1 + len(sets[ic[0]].style.formats)) / 4)
    n = min(jobs or default_jobs(), len(todo))
    if n <= 1:
        stop_workers()  # started ahead, not needed: nothing or one chart to draw
    pending = _jobs(todo, sets, out, data_kind)
    try:
        results = _serial(pending) if n <= 1 else _parallel(pending, n)
        registry: dict[Any, Any] = {}
        for r in results:
            _replay(r, registry)
            bar.set_postfix_str(r.name)
            bar.update()
            if r.png is None:
                continue
            cs, drawn = sets[r.index], done[r.index]
            drawn.pngs[r.name] = r.png
            drawn.seconds[r.name] = r.seconds
            for fmt in cs.style.formats:
                _record(out, f"{cs.folder}/{r.name}.{fmt}", keys[r.index][r.name])
            log.debug("%s/%s.*: drawn in %.2f s", cs.folder, r.name, r.seconds)
    finally:
        bar.close()
    for cs, drawn in zip(sets, done, strict=True):
        drawn.pngs = {c.name: drawn.pngs[c.name] for c in cs.charts if c.name in drawn.pngs}
    return done


def _keep(name: str, key: str, style: Style, out: Any, drawn: Drawn, folder: str) -> bool:
    """Carry the chart's files over when ``out`` holds them unchanged from the same key (only with a
    PNG among the formats: the report needs one)."""
    files = [f"{folder}/{name}.{fmt}" for fmt in style.formats]
    if "png" not in style.formats or not hasattr(out, "keep"):
        return False
    if not all(out.unchanged(f, key) for f in files):
        return False
    if not all(out.keep(f, key) for f in files):  # changed in between: draw it after all
        return False
    drawn.pngs[name] = (out.dir / folder / f"{name}.png").read_bytes()
    drawn.kept.append(name)
    log.debug("%s/%s.*: kept, unchanged", folder, name)
    return True


def _record(out: Any, rel: str, key: str) -> None:
    if hasattr(out, "made_from") and (out.dir / rel).is_file():
        out.made_from(rel, key)


def _jobs(
    todo: list[tuple[int, Chart]], sets: list[ChartSet], out: Any, data_kind: str | None
) -> Iterator[_Job]:
    """Each chart's job, its data made only when its turn comes (so a worker starts meanwhile)."""
    for i, c in todo:
        cs = sets[i]
        args = c.data()
        if args is None:
            continue
        for fmt in cs.style.formats:
            out.path(f"{cs.folder}/{c.name}.{fmt}")  # registered, folder made
        yield _Job(
            i,
            c.name,
            c.draw,
            args,
            cs.style,
            data_kind,
            out.dir / cs.folder / c.name,
            "png" not in cs.style.formats,
            os.environ.get("SOURCE_DATE_EPOCH"),
        )


def _serial(jobs: Iterator[_Job]) -> Iterator[_Result]:
    for job in jobs:
        yield draw_one(job)


def _pool(n: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=n,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(os.getpid(),),
    )


_WARM: list[ProcessPoolExecutor] = []  # at most one pool started ahead (:func:`start_workers`)


def start_workers(jobs: int | None = None, preload: tuple[str, ...] = ()) -> None:
    """Start the chart workers now, so that their start-up (a process and its imports, about a
    second each) overlaps the caller's own work; the next :func:`draw_sets` draws with them.

    ``run`` calls it when a stage of the study must be computed (its charts will likely change),
    not on a re-run that reads every stage back. ``preload``: the modules of the charts to
    import meanwhile. :func:`stop_workers` ends them if unused."""
    n = jobs or default_jobs()
    if n <= 1 or _WARM:
        return
    ex = _pool(n)
    for _ in range(n):
        ex.submit(_ready, preload)
    _WARM.append(ex)
    log.debug("%d chart workers started ahead", n)


def stop_workers() -> None:
    """End workers :func:`start_workers` started that no chart used (e.g. every chart kept)."""
    while _WARM:
        _stop(_WARM.pop())


def _ready(modules: tuple[str, ...]) -> None:
    """A worker's first task: import what drawing needs while the parent still computes."""
    import importlib

    import matplotlib.pyplot  # noqa: F401

    for m in modules:
        importlib.import_module(m)


def _parallel(jobs: Iterator[_Job], n: int) -> Iterator[_Result]:
    ex = _WARM.pop() if _WARM else _pool(n)
    running: set[Future[_Result]] = set()
    try:
        for job in jobs:
            running.add(ex.submit(_draw_in_worker, job))
            done = {f for f in running if f.done()}
            running -= done
            for f in done:
                yield _result(f)
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                yield _result(f)
    except BaseException:
        _stop(ex)
        raise
    ex.shutdown(wait=True)


def _result(f: Future[_Result]) -> _Result:
    from concurrent.futures.process import BrokenProcessPool

    try:
        return f.result()
    except BrokenProcessPool as e:
        raise NightlightsError(
            f"a chart process stopped unexpectedly ({e}); out of memory? try --jobs 1"
        ) from e


def _stop(ex: ProcessPoolExecutor) -> None:
    """Stop the workers now (Ctrl-C, SIGTERM, an error): nothing waits for their charts."""
    terminate = getattr(ex, "terminate_workers", None)  # Python 3.14
    if terminate is not None:
        terminate()
        return
    procs = list((getattr(ex, "_processes", None) or {}).values())  # shutdown forgets them
    ex.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(timeout=5)


def draw_one(job: _Job) -> _Result:
    """Draw one chart and save every format from one layout (in a worker, or in this process)."""
    import matplotlib.pyplot as plt

    start = time.perf_counter()
    with _source_date(job.source_date_epoch), styled(job.style):
        fig = job.draw(*job.args)
        if fig is None:
            return _Result(job.index, job.name, None, time.perf_counter() - start)
        title = f"nightlights: {job.name.replace('_', ' ')}"
        report = None
        try:
            with one_layout(fig, job.style.dpi):
                if job.report_png:  # the report's PNG, from the same layout
                    buf = io.BytesIO()
                    save_png(fig, buf, min(job.style.dpi, 200), {})
                    report = buf.getvalue()
                save(fig, job.base, job.style, {"data_kind": job.data_kind}, title=title)
        finally:
            plt.close(fig)
    png = report if report is not None else job.base.with_suffix(".png").read_bytes()
    return _Result(job.index, job.name, png, time.perf_counter() - start)


class _Collect(logging.Handler):
    """A worker's log records at WARNING and above, sent back with its chart."""

    records: ClassVar[list[tuple[str, int, str]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.name, record.levelno, record.getMessage()))


WORKER_NICENESS = 5  # added to a chart worker's nice value (Unix)


def _worker_init(parent: int) -> None:
    # below the parent's priority: workers started ahead of the charts (start_workers) import
    # while the parent still computes, and must not slow it; drawing, they run alone
    if hasattr(os, "nice"):
        os.nice(WORKER_NICENESS)
    import matplotlib

    # Ctrl-C reaches the whole process group: the parent stops the workers
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    matplotlib.use("Agg")
    logging.getLogger().addHandler(_Collect(logging.WARNING))
    threading.Thread(target=_end_with, args=(parent,), daemon=True).start()


def _end_with(parent: int) -> None:
    """End this worker when its parent is gone (killed: ``kill -9``, the OOM killer), so that no
    worker lingers, waiting for charts, holding the terminal's or a caller's pipes open. The
    parent's id comes from the parent: one killed while this worker was still starting has
    already left it another parent."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _draw_in_worker(job: _Job) -> _Result:
    _Collect.records.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = draw_one(job)
    said = tuple((str(w.message), w.category, w.filename, w.lineno) for w in caught)
    return _Result(r.index, r.name, r.png, r.seconds, said, tuple(_Collect.records))


def _replay(r: _Result, registry: dict[Any, Any]) -> None:
    """A worker's warnings and log lines, said here as if the chart had been drawn here."""
    for message, category, filename, lineno in r.warnings:
        warnings.warn_explicit(message, category, filename, lineno, registry=registry)
    for name, level, message in r.logs:
        logging.getLogger(name).log(level, "%s", message)


class _source_date:
    """``SOURCE_DATE_EPOCH`` as the parent had it when the job was made (file dates)."""

    def __init__(self, value: str | None):
        self.value = value

    def __enter__(self) -> None:
        self.old = os.environ.get("SOURCE_DATE_EPOCH")
        _set_env("SOURCE_DATE_EPOCH", self.value)

    def __exit__(self, *exc: object) -> None:
        _set_env("SOURCE_DATE_EPOCH", self.old)


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
