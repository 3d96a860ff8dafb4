"""Outputs: the one place that writes into ``--out``, all or nothing.

A run's files are first written into a staging folder, ``.<out>.nightlights-staging-<pid>-…``
beside ``--out``. Once the whole run has succeeded, the files of ``--out`` that stay (the
user's own files, outputs this run does not replace) are hard-linked into it, the list of
outputs (``.nightlights-outputs.json``) is written, and the two folders are swapped in ONE
atomic ``renameat2(RENAME_EXCHANGE)``: at every moment ``--out`` is either the previous
complete set or the new one, never a mix, never a partial file. The previous set, now in
the staging folder, is then deleted. A run killed outright leaves that folder behind (an
unfinished new set, or the previous set); the next run into ``--out`` removes it once its
process is gone, with a warning.

Where the swap is impossible (not Linux, a file system without it, ``--out`` a mount point
or the working folder, an unwritable parent) the set is staged inside ``--out`` and moved
file by file after a journal, ``.nightlights-journal.json``, has been written: the journal
is the commit point. A run killed before it leaves the previous set; one killed after it is
finished by the next run (roll forward), which says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import math
import os
import shutil
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.errors import NightlightsError

log = logging.getLogger(__name__)

STAGING_PREFIX = ".nightlights-staging-"  # + <pid>-<random>: inside --out (journal mode)
SIBLING_MARK = ".nightlights-staging-"  # .<out name> + this + <pid>-<random>: beside --out
MANIFEST = ".nightlights-outputs.json"  # what earlier runs wrote here, so stale results can go
JOURNAL = ".nightlights-journal.json"  # journal mode: the commit point of a file-by-file publish
KILL_AT = "NIGHTLIGHTS_TEST_KILL_AT"  # tests: SIGKILL this process at the Nth publishing step
_RENAME_EXCHANGE = 2
_steps = 0


def _step(label: str) -> None:
    """A numbered moment of publishing (for the kill tests: ``NIGHTLIGHTS_TEST_KILL_AT=N``)."""
    global _steps
    _steps += 1
    log.debug("outputs step %d: %s", _steps, label)
    if os.environ.get(KILL_AT) == str(_steps):
        os.kill(os.getpid(), signal.SIGKILL)


class Staging:
    """A staging folder whose files are published together by :meth:`commit`."""

    def __init__(self, out: Path, beside: bool = True):
        self.out = out
        if beside:
            prefix, where = f".{out.name}{SIBLING_MARK}{os.getpid()}-", out.parent
        else:
            prefix, where = f"{STAGING_PREFIX}{os.getpid()}-", out
        self.beside = beside
        self.dir = Path(tempfile.mkdtemp(prefix=prefix, dir=where))
        self.files: list[Path] = []

    def path(self, name: str) -> Path:
        _step(f"stage {name}")
        p = self.dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        self.files.append(p)
        return p

    def write_text(self, name: str, text: str) -> None:
        self.path(name).write_text(text, encoding="utf-8")

    def write_json(self, name: str, data: Any) -> None:
        self.write_text(name, json.dumps(_jsonable(data), indent=2, ensure_ascii=False) + "\n")

    def write_csv(self, name: str, df: pd.DataFrame, data_kind: str | None = None) -> None:
        if data_kind is not None:
            df = df.assign(data_kind=data_kind)
        df.to_csv(self.path(name), index=False, float_format="%.6g", lineterminator="\n")

    def write_with(self, name: str, writer: Callable[[Path], None]) -> None:
        writer(self.path(name))

    def commit(self, owns: tuple[str, ...] | None = None) -> list[Path]:
        """Publish the staged files; with ``owns``, also remove earlier outputs under those
        prefixes that this run did not write again (a run without figures must not leave
        the previous run's charts beside its new tables)."""
        written = sorted({f.relative_to(self.dir).as_posix() for f in self.files if f.is_file()})
        for rel in written:
            _fsync_file(self.dir / rel)
        with _publish_lock(self.out), _uninterrupted():
            earlier = _read_manifest(self.out)
            stale = {p for p in earlier - set(written) if owns is not None and p.startswith(owns)
                     and ".." not in Path(p).parts}
            manifest = sorted((earlier - stale) | set(written))
            if self.beside and _exchange_commit(self, written, stale, manifest):
                return [self.out / rel for rel in written]
            _journal_commit(self.out, self.dir, written, stale, manifest)
        return [self.out / rel for rel in written]


def _exchange_commit(s: Staging, written: list[str], stale: set[str], manifest: list[str]) -> bool:
    """Carry over what stays, then swap the folders; False (nothing changed) when impossible."""
    _step("carry over")
    if not _carry_over(s.out, s.dir, set(written), stale):
        return False
    (s.dir / MANIFEST).write_text(json.dumps(manifest, indent=0) + "\n", encoding="utf-8")
    _fsync_file(s.dir / MANIFEST)
    os.chmod(s.dir, stat.S_IMODE(s.out.stat().st_mode))
    _step("swap")
    if not _exchange(s.dir, s.out):
        return False
    _fsync_dir(s.out.parent)
    _step("remove previous set")
    for rel in sorted(stale):
        log.info("%s: removed, an output of an earlier run that this run does not make", s.out / rel)
    shutil.rmtree(s.dir, ignore_errors=True)  # the previous set
    _step("done")
    return True


def _carry_over(out: Path, new: Path, written: set[str], stale: set[str], rel: str = "") -> bool:
    """Hard-link every entry of ``out`` that stays into ``new``; False when one cannot be."""
    for entry in os.scandir(out / rel if rel else out):
        name = f"{rel}{entry.name}"
        if not rel and (entry.name in (MANIFEST, JOURNAL) or entry.name.startswith(STAGING_PREFIX)):
            continue
        if name in written or name in stale:
            continue
        dest = new / name
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), dest)
        elif entry.is_dir():
            dest.mkdir(exist_ok=True)
            shutil.copystat(entry.path, dest)
            if not _carry_over(out, new, written, stale, f"{name}/"):
                return False
        elif entry.is_file():
            try:
                os.link(entry.path, dest)
            except OSError:
                shutil.copy2(entry.path, dest)
        else:
            return False  # a socket or fifo: leave --out as it is, publish file by file
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two folders (Linux renameat2); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(-100, os.fsencode(a), -100, os.fsencode(b), _RENAME_EXCHANGE) == 0:  # -100: AT_FDCWD
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 18, 95):  # EINVAL, ENOSYS, EXDEV, EOPNOTSUPP: not on this file system
        return False
    raise OSError(err, os.strerror(err), str(b))


def _journal_commit(out: Path, src: Path, written: list[str], stale: set[str], manifest: list[str]) -> None:
    """File-by-file publishing whose commit point is the journal (finished by :func:`recover`)."""
    _step("journal")
    with atomic_write(out / JOURNAL) as tmp:
        tmp.write_text(json.dumps({"staging": str(src), "moves": written, "retire": sorted(stale),
                                   "manifest": manifest}), encoding="utf-8")
    _roll_forward(out)


def _roll_forward(out: Path) -> int:
    """Apply the journal in ``out`` (idempotent: a kill anywhere inside is finished next time)."""
    doc = json.loads((out / JOURNAL).read_text(encoding="utf-8"))
    src, moved = Path(doc["staging"]), 0
    for rel in doc["moves"]:
        if (src / rel).is_file():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(src / rel, out / rel)
            moved += 1
            _step(f"move {rel}")
    for rel in doc["retire"]:
        if ".." not in Path(rel).parts and (out / rel).is_file():
            (out / rel).unlink()
            log.info("%s: removed, an output of an earlier run that this run does not make", out / rel)
    with atomic_write(out / MANIFEST) as tmp:
        tmp.write_text(json.dumps(doc["manifest"], indent=0) + "\n", encoding="utf-8")
    _step("manifest")
    (out / JOURNAL).unlink()
    shutil.rmtree(src, ignore_errors=True)
    return moved


@contextmanager
def staged(out: Path | str, owns: tuple[str, ...] | None = None) -> Iterator[Staging]:
    """Stage a run's files for ``out``; publish on success, discard on any failure.

    ``owns``: output path prefixes this run replaces as a whole (``("",)`` for a full
    run): earlier outputs there that it does not write again are removed.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NightlightsError(f"{out}: cannot create output folder ({e.strerror})") from e
    if not os.access(out, os.W_OK):
        raise NightlightsError(f"{out}: output folder is not writable")
    out = out.resolve()
    recover(out)
    staging = Staging(out, beside=_can_swap(out))
    try:
        yield staging
        staging.commit(owns)
    finally:
        if not _journal_needs(out, staging.dir):  # a committed journal still needs its files
            shutil.rmtree(staging.dir, ignore_errors=True)


def _journal_needs(out: Path, folder: Path) -> bool:
    try:
        return Path(json.loads((out / JOURNAL).read_text(encoding="utf-8"))["staging"]) == folder
    except (OSError, ValueError, KeyError, TypeError):
        return False


@contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until publishing is over (milliseconds), then take effect.

    Only SIGKILL or power loss can stop it midway, and the swap or the journal covers that.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = {s: signal.signal(s, lambda n, _f: got.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if got:
            log.warning("the signal came while the outputs were being published; it took effect once the "
                        "output folder held a complete set")
            signal.raise_signal(got[0])


def _can_swap(out: Path) -> bool:
    """The folder swap needs a writable parent on the same device, and no process of ours inside."""
    parent = out.parent
    if out == parent or not os.access(parent, os.W_OK | os.X_OK):
        return False
    if out.stat().st_dev != parent.stat().st_dev:
        return False  # a mount point
    cwd = Path.cwd().resolve()
    return cwd != out and out not in cwd.parents


def recover(out: Path | str) -> list[Path]:
    """Clean up after runs into ``out`` that were killed: finish a journalled publish, remove
    staging folders (inside or beside ``out``) whose process is gone. Says so; returns them."""
    out = Path(out).resolve()
    cleaned = []
    if (out / JOURNAL).is_file():
        with _publish_lock(out):
            if (out / JOURNAL).is_file():
                try:
                    n = _roll_forward(out)
                    log.warning("%s: finished publishing the outputs of an interrupted run (%d files moved)", out, n)
                except (OSError, ValueError, KeyError, TypeError) as e:
                    raise NightlightsError(f"{out / JOURNAL}: cannot finish an interrupted publish ({e}); "
                                           "delete that file and run again") from e
                cleaned.append(out / JOURNAL)
    leftovers = [*out.glob(f"{STAGING_PREFIX}*"), *out.parent.glob(f".{out.name}{SIBLING_MARK}*")]
    for d in leftovers:
        pid = d.name.rsplit(SIBLING_MARK, 1)[-1].split("-", 1)[0]
        if d.is_dir() and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            log.warning("%s: removed the leftover staging folder of an interrupted run (process %s); "
                        "%s holds the last complete set", d, pid, out)
            cleaned.append(d)
    return cleaned


def remove_stale_staging(out: Path) -> list[Path]:
    """Earlier name of :func:`recover`."""
    return recover(out)


@contextmanager
def _publish_lock(out: Path) -> Iterator[None]:
    """One publisher at a time per ``--out`` (a lock on its parent folder, released at exit)."""
    try:
        fd = os.open(out.parent, os.O_RDONLY)
    except OSError:  # an unreadable parent: publish unlocked (one writer is the common case)
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read_manifest(out: Path) -> set[str]:
    try:
        return {str(p) for p in json.loads((out / MANIFEST).read_text(encoding="utf-8"))}
    except (OSError, ValueError, TypeError):
        return set()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs on this host (its leftovers are not to be removed)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


@contextmanager
def atomic_write(path: Path | str, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is flushed to disk and replaces
    ``path`` in one rename.

    The one way this package writes a single file (caches, downloads, manifests, the
    journal, ``extract``'s CSV): a reader sees the old file or the whole new one, never a
    part; on any error the temporary file is removed. Any writer that takes a path
    (``open``, pandas, rasterio, ``savefig``) can write to the yielded one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}{suffix}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def write_csv_atomic(path: Path | str, df: pd.DataFrame, data_kind: str | None = None) -> None:
    """One CSV written whole or not at all (:func:`atomic_write`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if data_kind is not None:
        df = df.assign(data_kind=data_kind)
    with atomic_write(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x
