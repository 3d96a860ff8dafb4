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

An output folder holds data, never instructions: the journal and the list of outputs are
trusted only where they are ours. The journal must name a staging folder of our naming
scheme inside ``--out`` or beside it; every file either names is a relative path inside
``--out`` reached through no symlink and no mount point, and is touched only when it is
still the very file we wrote (inode, size and modification time recorded when it was
published). Anything else is ignored with a warning. So nothing outside ``--out`` and its
staging folders is ever deleted or moved, nor a file in ``--out`` the tool did not write.
A mount point inside ``--out`` makes the publish go file by file around it, and no
deletion crosses a mount point or follows a symlink. One command at a time uses an output
folder (:func:`hold`, a lock on the folder held from start to end).

Longer than most modules because publishing and what may be trusted in an output folder
must be read together: a guarantee kept in one function is easily broken in another.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import math
import os
import re
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
MANIFEST_VERSION = 2  # {"version": 2, "files": {relative path: [inode, size, mtime_ns]}, "keys"}
# "keys" (optional; older lists have none): relative path -> the content key of what the file was
# made from (a chart's data and style), so that a later run can keep a file whose inputs are the same
_KEY = re.compile(r"[0-9a-f]{16,128}")
_STAGING_TAIL = re.compile(r"(\d+)-[A-Za-z0-9_]{1,32}")  # <pid>-<mkdtemp's random part>
_RENAME_EXCHANGE = 2
Stamp = tuple[int, int, int]  # inode, size, mtime_ns: "the very file we wrote"


def _step(label: str) -> None:
    """A named moment of publishing; the kill tests replace this function to stop there."""
    log.debug("outputs step: %s", label)


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
        self.keys: dict[str, str] = {}  # staged file -> content key of what it was made from
        self._earlier: tuple[dict[str, Stamp], dict[str, str]] | None = None
        self._linked: set[str] = set()  # kept files: hard links to the live outputs

    def path(self, name: str) -> Path:
        _step(f"stage {name}")
        p = self.dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if name in self._linked:  # written after all: never through the link into --out
            self._linked.discard(name)
            self.keys.pop(name, None)
            p.unlink(missing_ok=True)
        self.files.append(p)
        return p

    def write_text(self, name: str, text: str) -> None:
        self.path(name).write_text(text, encoding="utf-8")

    def write_json(self, name: str, data: Any) -> None:
        self.write_text(name, json.dumps(_jsonable(data), indent=2, ensure_ascii=False) + "\n")

    def write_csv(self, name: str, df: pd.DataFrame, data_kind: str | None = None) -> None:
        _to_csv(df, self.path(name), data_kind)

    def write_with(self, name: str, writer: Callable[[Path], None]) -> None:
        writer(self.path(name))

    def made_from(self, name: str, key: str) -> None:
        """Record that the staged file ``name`` was made from inputs whose digest is ``key`` (a
        hex string); the list of outputs keeps it, so a later run can :meth:`keep` the file."""
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a content key: {key!r}")
        self.keys[name] = key

    def unchanged(self, name: str, key: str) -> bool:
        """Whether ``--out`` holds ``name`` as an earlier run wrote it (the very file, unchanged
        since: the list of outputs is checked, not obeyed) from inputs whose digest was ``key``."""
        if self._earlier is None:
            self._earlier = (_read_manifest(self.out, quiet=True), _read_manifest_keys(self.out))
        files, keys = self._earlier
        return keys.get(name) == key and _is_ours(self.out, name, files.get(name), _dev(self.out))

    def keep(self, name: str, key: str) -> bool:
        """Carry the earlier output ``name`` into this set as it is, when it is :meth:`unchanged`
        (a hard link: the same bytes, inode and modification time); False, nothing staged, if not."""
        if not self.unchanged(name, key):
            return False
        assert self._earlier is not None
        stamp, src = self._earlier[0][name], self.out / name
        dest = self.path(name)
        try:
            os.link(src, dest, follow_symlinks=False)
        except OSError:
            shutil.copy2(src, dest, follow_symlinks=False)
        st = os.lstat(dest)
        if (st.st_size, st.st_mtime_ns) != stamp[1:]:  # replaced between the check and the link
            dest.unlink()
            return False
        self.keys[name] = key
        self._linked.add(name)
        return True

    def commit(
        self, owns: tuple[str, ...] | None = None, spares: tuple[str, ...] = ()
    ) -> list[Path]:
        """Publish the staged files; with ``owns``, also remove earlier outputs under those
        prefixes that this run did not write again (a run without figures must not leave
        the previous run's charts beside its new tables), except under the prefixes ``spares``
        (``figures`` in English spares ``figures/ko/``). Only files an earlier run wrote,
        still unchanged, are ever removed: the list of outputs is checked, not obeyed."""
        written = sorted({f.relative_to(self.dir).as_posix() for f in self.files if f.is_file()})
        for rel in written:
            _fsync_file(self.dir / rel)
        with _publish_lock(self.out), _uninterrupted():
            dev = _dev(self.out)
            claimed = _read_manifest(self.out)
            earlier = {rel: st for rel, st in claimed.items() if _is_ours(self.out, rel, st, dev)}
            scope = [
                rel
                for rel in claimed
                if rel not in written
                and owns is not None
                and rel.startswith(owns)
                and not rel.startswith(spares)
            ]
            for rel in sorted(
                r for r in scope if r not in earlier and os.path.lexists(self.out / r)
            ):
                log.warning(
                    "%s: kept: an earlier output that was changed since (or a file nightlights did not "
                    "write); delete it yourself if it is no longer wanted",
                    self.out / rel,
                )
            stale = {rel: earlier[rel] for rel in scope if rel in earlier}
            kept = {
                rel: st for rel, st in earlier.items() if rel not in written and rel not in stale
            }
            old_keys = _read_manifest_keys(self.out)
            keys = {rel: k for rel, k in old_keys.items() if rel in kept}
            keys.update({rel: k for rel, k in self.keys.items() if rel in written})
            if self.beside and _exchange_commit(self, written, stale, kept, keys):
                return [self.out / rel for rel in written]
            _journal_commit(self.out, self.dir, written, stale, kept, keys)
        return [self.out / rel for rel in written]


def _exchange_commit(
    s: Staging,
    written: list[str],
    stale: dict[str, Stamp],
    kept: dict[str, Stamp],
    keys: dict[str, str],
) -> bool:
    """Carry over what stays, then swap the folders; False (nothing changed) when impossible."""
    _step("carry over")
    dev = _dev(s.out)
    if _dev(s.dir) != dev or not _carry_over(s.out, s.dir, set(written), set(stale), dev):
        return False
    _write_manifest(
        s.dir / MANIFEST,
        {
            rel: st
            for rel in sorted({*written, *kept})
            if (st := _stamp(s.dir / rel, dev)) is not None
        },
        keys,
    )
    os.chmod(s.dir, stat.S_IMODE(s.out.stat().st_mode))
    _step("swap")
    if not _exchange(s.dir, s.out):
        return False
    _fsync_dir(s.out.parent)
    _step("remove previous set")
    for rel in sorted(stale):
        log.info(
            "%s: removed, an output of an earlier run that this run does not make", s.out / rel
        )
    _remove_tree(s.dir)  # the previous set
    _step("done")
    return True


def _carry_over(
    out: Path, new: Path, written: set[str], stale: set[str], dev: int, rel: str = ""
) -> bool:
    """Hard-link every entry of ``out`` that stays into ``new``; False when one cannot be.

    A mount point (or anything on another file system), a socket or a fifo cannot move with
    the folder: then ``--out`` is left as it is and the set is published file by file.
    """
    for entry in os.scandir(out / rel if rel else out):
        name = f"{rel}{entry.name}"
        if not rel and (entry.name in (MANIFEST, JOURNAL) or entry.name.startswith(STAGING_PREFIX)):
            continue
        if name in written or name in stale:
            continue
        dest = new / name
        st = entry.stat(follow_symlinks=False)
        if st.st_dev != dev:
            return False
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(entry.path), dest)
        elif stat.S_ISDIR(st.st_mode):
            if _is_mount(entry.path):
                return False
            dest.mkdir(exist_ok=True)
            shutil.copystat(entry.path, dest, follow_symlinks=False)
            if not _carry_over(out, new, written, stale, dev, f"{name}/"):
                return False
        elif stat.S_ISREG(st.st_mode):
            try:
                os.link(entry.path, dest, follow_symlinks=False)
            except OSError:
                shutil.copy2(entry.path, dest, follow_symlinks=False)
        else:
            return False  # a socket, fifo or device: leave --out as it is, publish file by file
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


def _journal_commit(
    out: Path,
    src: Path,
    written: list[str],
    stale: dict[str, Stamp],
    kept: dict[str, Stamp],
    keys: dict[str, str],
) -> None:
    """File-by-file publishing whose commit point is the journal (finished by :func:`recover`).

    The journal names its staging folder by name only (inside ``out`` or beside it) and
    stamps every file it moves, retires or lists, so that only those very files are touched.
    """
    _step("journal")
    dev = _dev(out)
    moves = {rel: st for rel in written if (st := _stamp(src / rel, dev)) is not None}
    doc = {
        "version": MANIFEST_VERSION,
        "staging": src.name,
        "beside": src.parent != out,
        "moves": moves,
        "retire": stale,
        "manifest": {**kept, **moves},
        "keys": keys,
    }
    with atomic_write(out / JOURNAL) as tmp:
        tmp.write_text(json.dumps(doc), encoding="utf-8")
    _roll_forward(out)


def _roll_forward(out: Path) -> int | None:
    """Apply the journal in ``out`` (idempotent: a kill anywhere inside is finished next time).

    None, with a warning, when the journal is not ours (:func:`_read_journal`): then nothing is done.
    """
    got = _read_journal(out)
    if got is None:
        return None
    src, doc = got
    dev, moved = _dev(out), 0
    for rel, st in doc["moves"].items():
        staged_file = _reach(src, rel, dev)
        if staged_file is None or _stamp(staged_file, dev) != st:
            continue  # moved already
        dest = _reach(out, rel, dev, create=True)
        if dest is None:
            log.warning("%s: not published: a symlink or a mount point is in the way", out / rel)
            continue
        os.replace(staged_file, dest)
        moved += 1
        _step(f"move {rel}")
    for rel, st in doc["retire"].items():
        if _is_ours(out, rel, st, dev):
            (out / rel).unlink()
            log.info(
                "%s: removed, an output of an earlier run that this run does not make", out / rel
            )
    _write_manifest(
        out / MANIFEST,
        {rel: st for rel, st in doc["manifest"].items() if _is_ours(out, rel, st, dev)},
        doc["keys"],
    )
    _step("manifest")
    (out / JOURNAL).unlink()
    _remove_tree(src)
    return moved


def _read_journal(out: Path) -> tuple[Path, dict[str, Any]] | None:
    """The journal in ``out`` and its staging folder when both are ours; None, with a warning, when not."""
    path = out / JOURNAL
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        src, why = _journal_source(out, doc)
    except (OSError, ValueError) as e:
        src, why = None, f"unreadable: {e.__class__.__name__}"
    if src is None:
        log.warning(
            "%s: ignored: not the journal of an interrupted nightlights publish into this folder (%s); "
            "nothing it names was touched; delete it",
            path,
            why,
        )
        return None
    return src, {
        **{
            key: {rel: _as_stamp(v) for rel, v in doc[key].items()}
            for key in ("moves", "retire", "manifest")
        },
        "keys": _valid_keys(doc.get("keys")),  # a journal of an older version has none
    }


def _journal_source(out: Path, doc: Any) -> tuple[Path | None, str]:
    """The journal's staging folder, or None and why the journal is not trusted."""
    if not isinstance(doc, dict) or doc.get("version") != MANIFEST_VERSION:
        return None, "not of this version's format"
    for key in ("moves", "retire", "manifest"):
        entries = doc.get(key)
        if not isinstance(entries, dict) or not all(
            _safe_rel(k) and _as_stamp(v) for k, v in entries.items()
        ):
            return (
                None,
                f"'{key}' names a path that is not inside the folder, or a file without its stamp",
            )
    name = doc.get("staging")
    where, prefix = (
        (out.parent, f".{out.name}{SIBLING_MARK}") if doc.get("beside") else (out, STAGING_PREFIX)
    )
    if (
        not isinstance(name, str)
        or not name.startswith(prefix)
        or not _STAGING_TAIL.fullmatch(name[len(prefix) :])
    ):
        return None, "its staging folder is not one of ours, inside the folder or beside it"
    try:
        st = os.lstat(where / name)
    except OSError:
        return None, "its staging folder is gone"
    if not stat.S_ISDIR(st.st_mode) or st.st_dev != _dev(out) or _is_mount(where / name):
        return None, "its staging folder is not a plain folder on the same file system"
    return where / name, ""


@contextmanager
def staged(
    out: Path | str, owns: tuple[str, ...] | None = None, spares: tuple[str, ...] = ()
) -> Iterator[Staging]:
    """Stage a run's files for ``out``; publish on success, discard on any failure.

    ``owns``: output path prefixes this run replaces as a whole (``("",)`` for a full
    run): earlier outputs there that it does not write again are removed, except under
    the prefixes ``spares``.
    """
    out = Path(out)
    check_out_folder(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NightlightsError(f"{out}: cannot create output folder ({e.strerror})") from e
    if not os.access(out, os.W_OK):
        raise NightlightsError(f"{out}: output folder is not writable")
    out = out.resolve()
    with hold(out):
        recover(out)
        staging = Staging(out, beside=_can_swap(out))
        try:
            yield staging
            staging.commit(owns, spares)
        finally:
            if not _journal_needs(out, staging.dir):  # a committed journal still needs its files
                _remove_tree(staging.dir)


def check_out_folder(out: Path | str) -> None:
    """Refuse an output folder the tool must never manage: the file system root."""
    real = Path(os.path.realpath(out))
    if real == real.parent:
        raise NightlightsError(
            f"{out}: is the file system root; --out takes a folder of its own for the results, "
            "such as outputs/"
        )


def _journal_needs(out: Path, folder: Path) -> bool:
    try:
        return json.loads((out / JOURNAL).read_text(encoding="utf-8"))["staging"] == folder.name
    except (OSError, ValueError, KeyError, TypeError):
        return False


_held: dict[str, int] = {}  # output folders this process holds (hold() is re-entrant)


@contextmanager
def hold(out: Path | str) -> Iterator[None]:
    """One nightlights command at a time per output folder: an exclusive lock on the folder,
    held until the command ends; a second command (run, compare, figures) refuses at once
    instead of mixing its files with the first one's. A folder that does not exist yet is
    locked when :func:`staged` creates it. Only a publisher swaps the folder, and it holds
    the lock, so the lock stays on the folder that ``out`` names until it is released."""
    path = Path(out)
    key = os.path.realpath(path)
    fd = None
    if path.is_dir() and key not in _held:
        fd = os.open(key, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise NightlightsError(
                f"{out}: another nightlights command is using this output folder (run, compare "
                "or figures); wait until it has finished, or choose another --out"
            ) from None
        except OSError:  # a file system without locks: one writer is the common case
            os.close(fd)
            fd = None
    if fd is not None:
        _held[key] = fd
    try:
        yield
    finally:
        if fd is not None:
            _held.pop(key, None)
            os.close(fd)


@contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until publishing is over (milliseconds), then take effect.

    Only SIGKILL or power loss can stop it midway, and the swap or the journal covers that.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = {
        s: signal.signal(s, lambda n, _f: got.append(n)) for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if got:
            log.warning(
                "the signal came while the outputs were being published; it took effect once the "
                "output folder held a complete set"
            )
            signal.raise_signal(got[0])


def _can_swap(out: Path) -> bool:
    """The folder swap needs a writable parent on the same device, and no process of ours inside."""
    parent = out.parent
    if out == parent or not os.access(parent, os.W_OK | os.X_OK):
        return False
    if out.stat().st_dev != parent.stat().st_dev or _is_mount(out):
        return False  # a mount point
    cwd = Path.cwd().resolve()
    return cwd != out and out not in cwd.parents


def recover(out: Path | str) -> list[Path]:
    """Clean up after runs into ``out`` that were killed: finish a journalled publish, remove
    staging folders (inside or beside ``out``) whose process is gone. Says so; returns them.

    Only what is ours is touched: a journal that is not (see :func:`_read_journal`) is
    ignored with a warning, and a leftover must be a plain folder of our naming scheme."""
    out = Path(out).resolve()
    cleaned = []
    if (out / JOURNAL).is_file():
        with _publish_lock(out):
            if (out / JOURNAL).is_file():
                try:
                    n = _roll_forward(out)
                except (OSError, ValueError, KeyError, TypeError) as e:
                    raise NightlightsError(
                        f"{out / JOURNAL}: cannot finish an interrupted publish ({e}); "
                        "delete that file and run again"
                    ) from e
                if n is not None:
                    log.warning(
                        "%s: finished publishing the outputs of an interrupted run (%d files moved)",
                        out,
                        n,
                    )
                    cleaned.append(out / JOURNAL)
    for d, pid in _leftovers(out):
        if not process_alive(pid):
            _remove_tree(d)
            log.warning(
                "%s: removed the leftover staging folder of an interrupted run (process %s); "
                "%s holds the last complete set",
                d,
                pid,
                out,
            )
            cleaned.append(d)
    return cleaned


def _leftovers(out: Path) -> list[tuple[Path, int]]:
    """Staging folders of ours inside or beside ``out`` (plain folders on its file system) and their process."""
    found = []
    dev = _dev(out)
    for where, prefix in ((out, STAGING_PREFIX), (out.parent, f".{out.name}{SIBLING_MARK}")):
        try:
            entries = list(os.scandir(where))
        except OSError:
            continue
        for e in entries:
            m = (
                _STAGING_TAIL.fullmatch(e.name[len(prefix) :])
                if e.name.startswith(prefix)
                else None
            )
            if m is None:
                continue
            with contextlib.suppress(OSError):
                st = e.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode) and st.st_dev == dev and not _is_mount(e.path):
                    found.append((Path(e.path), int(m[1])))
    return found


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


# --------------------------------------------------------------------------- what is ours


def _dev(path: Path | str) -> int:
    return os.stat(path).st_dev


def _safe_rel(rel: object) -> bool:
    """A relative path inside the folder: no absolute path, no '..', not our bookkeeping."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or rel.startswith("/"):
        return False
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return False
    return parts[0] not in (MANIFEST, JOURNAL) and not parts[0].startswith(STAGING_PREFIX)


def _as_stamp(raw: object) -> Stamp | None:
    if (
        isinstance(raw, list | tuple)
        and len(raw) == 3
        and all(type(v) is int and v >= 0 for v in raw)
    ):
        return (raw[0], raw[1], raw[2])
    return None


def _stamp(path: Path, dev: int) -> Stamp | None:
    """Inode, size and modification time of a regular file (never through a symlink) on ``dev``."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_dev != dev:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _reach(root: Path, rel: str, dev: int, create: bool = False) -> Path | None:
    """``root / rel`` when every folder on the way is a plain folder on ``dev`` (no symlink, no
    mount point); with ``create``, missing folders are made. None when something is in the way."""
    cur = root
    for part in rel.split("/")[:-1]:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            if not create:
                return None
            os.mkdir(cur)
            continue
        except OSError:
            return None
        if not stat.S_ISDIR(st.st_mode) or st.st_dev != dev or _is_mount(cur):
            return None
    return root / rel


def _is_ours(root: Path, rel: str, stamp: Stamp | None, dev: int) -> bool:
    """Whether ``root / rel`` is still the very file that was stamped, reached safely."""
    if stamp is None or not _safe_rel(rel):
        return False
    path = _reach(root, rel, dev)
    return path is not None and _stamp(path, dev) == stamp


def _mount_points() -> set[str]:
    """Every mount point of this process (Linux; bind mounts of the same file system included,
    which ``os.path.ismount`` does not see)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            return {
                re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4]) for line in f
            }
    except (OSError, IndexError):
        return set()


def _is_mount(path: Path | str) -> bool:
    return os.path.ismount(path) or os.path.abspath(path) in _mount_points()


def _remove_tree(folder: Path) -> None:
    """Delete ``folder`` without following a symlink or entering a mount point (those stay)."""
    try:
        top = os.lstat(folder)
    except OSError:
        return
    if not stat.S_ISDIR(top.st_mode) or _is_mount(folder):
        return
    mounts = _mount_points()

    def clear(path: str) -> None:
        try:
            entries = list(os.scandir(path))
        except OSError:
            return
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_dev != top.st_dev:
                continue
            if stat.S_ISDIR(st.st_mode):
                if os.path.ismount(e.path) or os.path.abspath(e.path) in mounts:
                    continue
                clear(e.path)
                with contextlib.suppress(OSError):
                    os.rmdir(e.path)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(e.path)

    clear(os.path.abspath(folder))
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def _read_manifest(out: Path, quiet: bool = False) -> dict[str, Stamp]:
    """What the list of outputs claims earlier runs wrote (to be checked with :func:`_is_ours`);
    ``quiet``: no word about a list of another format (the commit says it)."""
    try:
        doc = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if isinstance(doc, list):
        if not quiet:
            log.info(
                "%s: a list of outputs without file stamps (an older version): the outputs it names "
                "that this run does not make are kept",
                out / MANIFEST,
            )
        return {}
    files = (
        doc.get("files")
        if isinstance(doc, dict) and doc.get("version") == MANIFEST_VERSION
        else None
    )
    if not isinstance(files, dict):
        if not quiet:
            log.warning("%s: ignored: not a list of outputs written by nightlights", out / MANIFEST)
        return {}
    return {
        rel: st
        for rel, raw in files.items()
        if _safe_rel(rel) and (st := _as_stamp(raw)) is not None
    }


def _read_manifest_keys(out: Path) -> dict[str, str]:
    """The content keys the list of outputs records (none from an older or foreign list)."""
    try:
        doc = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("version") != MANIFEST_VERSION:
        return {}
    return _valid_keys(doc.get("keys"))


def _valid_keys(raw: object) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    return {
        rel: k
        for rel, k in raw.items()
        if _safe_rel(rel) and isinstance(k, str) and _KEY.fullmatch(k)
    }


def _write_manifest(
    path: Path, files: dict[str, Stamp], keys: dict[str, str] | None = None
) -> None:
    doc: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "files": {k: list(v) for k, v in sorted(files.items())},
    }
    keys = {rel: k for rel, k in sorted((keys or {}).items()) if rel in files}
    if keys:
        doc["keys"] = keys
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=0) + "\n", encoding="utf-8")


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
    try:
        target = os.stat(path)  # through a symlink: what the name leads to
    except OSError:
        target = None
    if target is not None and not stat.S_ISREG(target.st_mode):
        raise NightlightsError(
            f"{path}: exists and is not a regular file (a folder, device, pipe or socket); it is "
            "never replaced: give the name of a new or an existing regular file"
        )
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
    with atomic_write(path) as tmp:
        _to_csv(df, tmp, data_kind)


FORMULA_START = (
    "=",
    "+",
    "-",
    "@",
    "\t",
    "\r",
)  # what makes a spreadsheet run a cell (CSV injection)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _to_csv(df: pd.DataFrame, path: Path, data_kind: str | None) -> None:
    """The one CSV format: UTF-8 with a byte-order mark, so a spreadsheet opened by a double click
    reads Korean names intact (pandas, readr, polars and LibreOffice skip the mark); text cells that
    a spreadsheet would run as a formula start with ``'``."""
    if data_kind is not None:
        df = df.assign(data_kind=data_kind)
    inert_csv(df).to_csv(
        path, index=False, float_format="%.6g", lineterminator="\n", encoding="utf-8-sig"
    )


def inert_csv(df: pd.DataFrame) -> pd.DataFrame:
    """Text cells starting with ``= + - @``, a tab or a carriage return get a leading ``'``, as
    spreadsheets expect, so that a site name or claim text from an input cannot become a formula.
    Only text columns are touched (numbers stay numbers, negative ones too), and text that is
    itself a plain number (``-3.5``) is left as it is."""
    return _recast(
        df,
        _text_columns(df),
        lambda v: isinstance(v, str) and v.startswith(FORMULA_START) and not _NUMBER.fullmatch(v),
        lambda v: "'" + v,
    )


def _text_columns(df: pd.DataFrame) -> list[Any]:
    return [
        c
        for c in df.columns
        if df[c].dtype == object
        or pd.api.types.is_string_dtype(df[c].dtype)
        or isinstance(df[c].dtype, pd.CategoricalDtype)
    ]


def _recast(
    df: pd.DataFrame, columns: list[Any], hit: Callable[[Any], bool], fix: Callable[[str], str]
) -> pd.DataFrame:
    """``df`` with ``fix`` applied to the cells of ``columns`` that ``hit`` (by position: any index)."""
    fixed = {}
    for c in columns:
        values = df[c].to_numpy(dtype=object, copy=True)
        rows = [i for i, v in enumerate(values) if hit(v)]
        for i in rows:
            values[i] = fix(values[i])
        if rows:
            fixed[c] = pd.Series(values, index=df.index, name=c)
    if not fixed:
        return df
    out = df.copy(deep=False)
    for c, col in fixed.items():
        out[c] = col
    return out


def uninert_csv(df: pd.DataFrame) -> pd.DataFrame:
    """Undo :func:`inert_csv` on a table read back (``nightlights figures``)."""
    return _recast(
        df,
        _text_columns(df),
        lambda v: (
            isinstance(v, str)
            and v[:1] == "'"
            and v[1:].startswith(FORMULA_START)
            and not _NUMBER.fullmatch(v[1:])
        ),
        lambda v: v[1:],
    )


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


def portable_path(path: Path | str, base: Path | str | None = None) -> str:
    """``path`` relative to ``base`` (default: the current folder), with ``/``: what an output
    holds instead of a machine's absolute path. A relative ``path`` is taken from the current folder."""
    p = Path(path).absolute()
    try:
        return Path(os.path.relpath(p, Path(base or Path.cwd()).absolute())).as_posix()
    except ValueError:  # another drive (Windows): the name alone
        return p.name
