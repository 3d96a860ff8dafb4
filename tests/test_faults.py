"""Faults: runs killed, interrupted or failing mid-write never lose earlier outputs.

Runs are real ``nightlights run`` processes (``python -c`` around ``pipeline.cli.main``)
on tiny SYNTHETIC rasters. To stop a run *while it writes*, the child's
``Staging.write_json`` is wrapped so that, after writing ``verdict.json`` into the
staging folder (the tables are already there), it signals the test through a flag file
and waits; the test then kills it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.outputs import MANIFEST, SIBLING_MARK, Staging
from tests.bad_inputs.rasters import write_months, write_sites

CHILD = """
import pathlib, sys, time
flag = sys.argv[1]
if flag != "-":
    import pipeline.outputs as o
    write_json = o.Staging.write_json
    def stall(self, name, data):
        write_json(self, name, data)
        pathlib.Path(flag).write_text(str(self.dir))
        time.sleep(120)
    o.Staging.write_json = stall
from pipeline.cli import main
sys.exit(main(sys.argv[2:]))
"""
TOKEN = "tok-5f3a9c1e-DO-NOT-LEAK-7b2d"
SECRET_VARS = ("EOG_TOKEN", "EARTHDATA_TOKEN", "EOG_PASSWORD", "EOG_CLIENT_SECRET")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("inputs")
    return write_months(root / "rasters")[0].parent, write_sites(root / "sites.geojson")


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No real credentials or user config; HOME is a fresh folder we can inspect."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            *SECRET_VARS,
            "EOG_CLIENT_ID",
            "EOG_USERNAME",
            "NIGHTLIGHTS_CONFIG",
            "XDG_CONFIG_HOME",
            "XDG_CACHE_HOME",
            "MPLCONFIGDIR",
            "NIGHTLIGHTS_JOBS",  # charts drawn as a user's run draws them (worker processes)
        )
    }
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), PYTHONPATH=str(Path(__file__).parents[1]), **extra)
    return env


def run_args(inputs: tuple[Path, Path], out: Path, *more: str) -> list[str]:
    rasters, sites = inputs
    return [
        "run",
        "--source",
        "local",
        "--rasters",
        str(rasters),
        "--sites",
        str(sites),
        "--out",
        str(out),
        "--no-figures",
        "--no-sensitivity",
        "-q",
        *more,
    ]


def spawn(
    args: list[str],
    tmp_path: Path,
    flag: Path | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(flag) if flag else "-", *args],
        cwd=cwd or tmp_path,
        env=env or clean_env(tmp_path),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def wait_for(flag: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never reached its writing step"
        time.sleep(0.05)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes (hidden ones included)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def visible(folder: Path) -> dict[str, bytes]:
    return {
        k: v
        for k, v in snapshot(folder).items()
        if not any(part.startswith(".") for part in Path(k).parts)
    }


@pytest.fixture(scope="module")
def earlier(
    inputs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, bytes]:
    """A finished run's outputs (threshold 0.25), to be protected by every failing run."""
    tmp = tmp_path_factory.mktemp("earlier")
    code, _, err = finish(spawn(run_args(inputs, tmp / "out"), tmp))
    assert code == 0, err
    files = visible(tmp / "out")
    assert {"site_months.csv", "site_changes.csv", "verdict.json"} <= set(files)
    return files


def restore(out: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)


# --------------------------------------------------------------------------- killed and interrupted


@pytest.mark.xdist_group("earlier")  # one worker makes the earlier run for the four tests
def test_sigkill_mid_write_leaves_earlier_outputs_intact(inputs, earlier, tmp_path: Path) -> None:
    out, flag = tmp_path / "out", tmp_path / "flag"
    restore(out, earlier)
    proc = spawn(run_args(inputs, out, "--threshold", "0.1"), tmp_path, flag)
    wait_for(flag, proc)
    staging = Path(flag.read_text())
    assert (staging / "verdict.json").exists() and (staging / "site_months.csv").exists()
    proc.kill()
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert visible(out) == earlier  # byte for byte, no new or half-written file in sight
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # staged beside --out
    assert staging.parent == out.parent and staging.name.startswith(
        f".out{SIBLING_MARK}{proc.pid}-"
    )
    # The next run into the same folder clears the dead run's staging folder and publishes.
    code, _, err = finish(spawn(run_args(inputs, out, "--threshold", "0.1"), tmp_path))
    assert code == 0, err
    assert not staging.exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [
        MANIFEST
    ]  # no staging left
    assert (
        visible(out)["site_months.csv"] == earlier["site_months.csv"]
    )  # threshold changes classes only
    assert visible(out)["verdict.json"] != earlier["verdict.json"]


@pytest.mark.xdist_group("earlier")
@pytest.mark.parametrize(
    ("sig", "code", "message"),
    [
        (signal.SIGINT, 130, "nightlights: interrupted; earlier outputs were left untouched"),
        (signal.SIGTERM, 143, "nightlights: terminated; earlier outputs were left untouched"),
    ],
)
def test_ctrl_c_and_sigterm_exit_cleanly(
    sig: int, code: int, message: str, inputs, earlier, tmp_path: Path
) -> None:
    out, flag = tmp_path / "out", tmp_path / "flag"
    restore(out, earlier)
    proc = spawn(run_args(inputs, out, "--threshold", "0.1"), tmp_path, flag)
    wait_for(flag, proc)
    proc.send_signal(sig)
    rc, stdout, stderr = finish(proc)
    assert rc == code
    assert stderr.strip().splitlines() == [message]
    assert "Traceback" not in stdout + stderr
    assert snapshot(out) == earlier  # and the staging folder is gone too


# --------------------------------------------------------------------------- failures in the writer


@pytest.mark.xdist_group("earlier")
@pytest.mark.parametrize(
    ("error", "line", "code"),
    [
        (
            RuntimeError("disk on fire"),
            "nightlights: unexpected error: RuntimeError: disk on fire (run again with --debug for the traceback, "
            "and please report it)",
            1,
        ),
        (
            OSError(28, "No space left on device", "verdict.json"),
            "nightlights: error: verdict.json: No space left on device (earlier outputs were left untouched)",
            1,
        ),
    ],
)
def test_writer_failure_keeps_earlier_outputs(
    error: Exception,
    line: str,
    code: int,
    inputs,
    earlier,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    restore(out, earlier)
    written: list[Path] = []

    def failing(self: Staging, name: str, data: object) -> None:
        written.extend(self.files)
        raise error

    monkeypatch.setattr(Staging, "write_json", failing)
    assert main(run_args(inputs, out, "--threshold", "0.1")) == code
    _, err = capsys.readouterr()
    assert [x for x in err.splitlines() if x.startswith("nightlights")] == [line]
    assert "Traceback" not in err
    assert written and not any(p.exists() for p in written)  # the staged tables were discarded
    assert snapshot(out) == earlier


def test_output_folder_that_is_a_file(
    inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.write_text("keep me")
    assert main(run_args(inputs, out)) == 2
    _, err = capsys.readouterr()
    assert (
        err.strip().splitlines()[-1]
        == f"nightlights: error: {out}: is a file; --out takes a folder for the results"
    )
    assert out.read_text() == "keep me"


# --------------------------------------------------------------------------- footprint, idempotence


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def full_run(inputs, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A full run (figures included) from a working folder, with listings before and after."""
    tmp = tmp_path_factory.mktemp("full")
    work = tmp / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    env = clean_env(tmp)
    home = Path(env["HOME"])
    before, home_before = tree(work), tree(home)
    args = [*run_args(inputs, work / "out"), "--data-dir", str(work / "data")]
    args.remove("--no-figures")
    code, _, err = finish(spawn(args, tmp, cwd=work, env=env))
    assert code == 0, err
    return {
        "work": work,
        "home": home,
        "env": env,
        "tmp": tmp,
        "args": args,
        "before": before,
        "after": tree(work),
        "home_before": home_before,
        "home_after": tree(home),
    }


@pytest.mark.xdist_group("full_run")  # one worker makes full_run
@pytest.mark.slow
def test_nothing_written_outside_out_and_data(full_run: dict) -> None:
    before, after = full_run["before"], full_run["after"]
    assert {k: v for k, v in after.items() if k in before} == before  # nothing touched
    new = sorted(k for k in after if k not in before)
    assert any(k.startswith("out/figures/") for k in new)
    assert all(k.split("/")[0] in ("out", "data") for k in new), new


@pytest.mark.xdist_group("full_run")  # one worker makes full_run
@pytest.mark.slow  # a whole run with figures in a fresh process (make test runs it)
def test_nothing_written_into_home(full_run: dict) -> None:
    """Only libraries' own caches (matplotlib's font list) may appear in HOME."""
    new = {k for k in full_run["home_after"] if k not in full_run["home_before"]}
    assert {k for k in new if not k.startswith(".cache/matplotlib/")} == set()


@pytest.mark.xdist_group("full_run")  # one worker makes full_run
@pytest.mark.slow  # a whole run with figures in a fresh process (make test runs it)
def test_reruns_are_byte_identical(full_run: dict) -> None:
    out = full_run["work"] / "out"
    first = {k: v for k, v in visible(out).items() if k.endswith((".csv", ".json"))}
    assert {"site_months.csv", "site_changes.csv", "verdict.json"} <= set(first)
    args = [*full_run["args"], "--no-figures"]
    code, _, err = finish(spawn(args, full_run["tmp"], cwd=full_run["work"], env=full_run["env"]))
    assert code == 0, err
    second = {k: v for k, v in visible(out).items() if k.endswith((".csv", ".json"))}
    assert second == first
    # the only hidden file is the list of outputs (no staging folder is left behind)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [MANIFEST]


# --------------------------------------------------------------------------- secrets


def _all_text(*folders: Path) -> bytes:
    return b"".join(
        p.read_bytes() for f in folders if f.exists() for p in f.rglob("*") if p.is_file()
    )


def test_tokens_never_reach_logs_or_outputs(
    inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"data:\n  eog_token: {TOKEN}\n  earthdata_token: {TOKEN}\nanalysis:\n  threshold: 0.3\n"
    )
    env = clean_env(tmp_path, NIGHTLIGHTS_CONFIG=str(config), **dict.fromkeys(SECRET_VARS, TOKEN))
    out, data = tmp_path / "out", tmp_path / "data"
    code, stdout, stderr = finish(
        spawn([*run_args(inputs, out, "--data-dir", str(data)), "--debug"], tmp_path, env=env)
    )
    assert code == 0, stderr
    assert TOKEN not in stdout + stderr
    assert TOKEN.encode() not in _all_text(out, data)
    # A config error in the same file names the key, not the secret beside it.
    config.write_text(f"data:\n  eog_token: {TOKEN}\nanalysis:\n  eog_token: {TOKEN}\n")
    monkeypatch.setenv("NIGHTLIGHTS_CONFIG", str(config))
    assert main(run_args(inputs, out)) == 2
    stdout, stderr = capsys.readouterr()
    assert "unknown parameter 'eog_token'" in stderr
    assert TOKEN not in stdout + stderr


class _EchoAuth(BaseHTTPRequestHandler):
    """Refuses everything with 401 and echoes the request headers, as careless servers do."""

    def _reply(self) -> None:
        body = f"denied; you sent {dict(self.headers)}".encode()
        self.send_response(401)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("WWW-Authenticate", "Bearer")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _reply

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("source", "debug"), [("eog", ()), ("blackmarble", ("--debug",))])
def test_tokens_never_reach_download_errors(
    source: str, debug: tuple[str, ...], inputs, tmp_path: Path
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoAuth)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    env = clean_env(
        tmp_path,
        NIGHTLIGHTS_EOG_URL=url,
        NIGHTLIGHTS_EOG_TOKEN_URL=f"{url}/token",
        NIGHTLIGHTS_LAADS_URL=url,
        EOG_CLIENT_ID="nightlights",
        EOG_USERNAME="someone",
        **dict.fromkeys(SECRET_VARS, TOKEN),
    )
    _, sites = inputs
    out, data = tmp_path / "out", tmp_path / "data"
    try:
        code, stdout, stderr = finish(
            spawn(
                [
                    "run",
                    "--source",
                    source,
                    "--sites",
                    str(sites),
                    "--out",
                    str(out),
                    "--data-dir",
                    str(data),
                    "-q",
                    *debug,
                ],
                tmp_path,
                env=env,
            )
        )
        assert code != 0
        assert TOKEN not in stdout + stderr
        if not debug:
            assert "Traceback" not in stderr
            assert stderr.strip().splitlines()[-1].startswith("nightlights: error: ")
    finally:
        server.shutdown()
        server.server_close()
    assert TOKEN.encode() not in _all_text(out, data)
    assert not out.exists()
