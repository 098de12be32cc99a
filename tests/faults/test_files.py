"""Files a run leaves behind: temp folders of a killed run, a disk that fills up mid-write."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cli.conftest import cli  # tests/ is on sys.path

import edgeformer
from edgeformer.artifact import Artifact, ArtifactWriter, write_text_atomic
from edgeformer.errors import DiskFullError
from edgeformer.scratch import HOST, make_scratch_dir, owner_of, prune_dead, scratch_dir

CHECKOUT = str(Path(edgeformer.__file__).parents[1])

# a run that holds a system temp folder and an artifact temp folder, then waits to be killed
_HOLDER = textwrap.dedent(
    """
    import sys, time
    from edgeformer.artifact import ArtifactWriter
    from edgeformer.scratch import make_scratch_dir
    scratch = make_scratch_dir("quant")
    (scratch / "big.bin").write_bytes(b"\\0" * (1 << 20))
    with ArtifactWriter(sys.argv[1], overwrite=True) as w:
        (w.dir / "model.onnx").write_bytes(b"\\0" * (1 << 20))
        print(scratch, w.dir, flush=True)
        time.sleep(600)
    """
)


def _env(tmpdir: Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmpdir), "PYTHONPATH": CHECKOUT}


def _killed_holder(tmp_path: Path, dest: Path) -> tuple[int, Path, Path]:
    """A real child that made its temp folders, killed with SIGKILL (and reaped): (pid, system temp, beside)."""
    sys_tmp = tmp_path / "system-tmp"
    sys_tmp.mkdir(exist_ok=True)
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(dest)], stdout=subprocess.PIPE, text=True, env=_env(sys_tmp)
    )
    try:
        scratch, beside = (Path(p) for p in child.stdout.readline().split())
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL and scratch.is_dir() and beside.is_dir()
    return child.pid, scratch, beside


def test_temp_folders_of_a_killed_run_are_removed_by_the_next_run(tmp_path):
    from test_artifact import write_artifact  # tests/ is on sys.path

    dest = tmp_path / "art"
    before = write_artifact(dest)
    pid, scratch, beside = _killed_holder(tmp_path, dest)
    assert owner_of(scratch.name) == (HOST, pid) and owner_of(beside.name) == (HOST, pid)
    assert scratch.parent == tmp_path / "system-tmp" and beside.parent == tmp_path
    # the next run: its own system temp folder, and a write of the same artifact
    next_run = "from edgeformer.scratch import scratch_dir\nwith scratch_dir('pre'): pass"
    subprocess.run([sys.executable, "-c", next_run], check=True, env=_env(scratch.parent))
    assert not scratch.exists()
    write_artifact(dest, overwrite=True)
    assert not beside.exists()
    assert Artifact.load(dest).manifest.model_name == before.manifest.model_name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "system-tmp"]


def test_temp_folders_of_a_live_run_or_another_machine_are_kept(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        mine = tmp_path / f"edgeformer-quant-h{HOST}-p{live.pid}-abc"
        other_host = tmp_path / f"edgeformer-quant-h{'0' * 8 if HOST != '0' * 8 else '1' * 8}-p999999999-abc"
        foreign = tmp_path / "edgeformer-quant-7x2k"  # made by another tool, or an older edgeformer: no owner
        for p in (mine, other_host, foreign):
            p.mkdir()
        assert prune_dead(tmp_path) == []
        assert mine.is_dir() and other_host.is_dir() and foreign.is_dir()
    finally:
        live.kill()
        live.wait()
    assert prune_dead(tmp_path) == [mine]


def test_an_old_artifact_moved_aside_by_a_killed_run_is_put_back_not_deleted(tmp_path):
    from test_artifact import write_artifact

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    write_artifact(tmp_path / "staging")
    # what a writer killed between its two renames leaves: the old artifact aside, no destination
    aside = tmp_path / f".art.edgeformer-old-h{HOST}-p{pid}"
    (tmp_path / "staging").rename(aside)
    with scratch_dir("pre", tmp_path):
        pass
    assert not aside.exists()
    Artifact.load(tmp_path / "art")  # back in place, every hash checked


def test_killed_quantize_leaves_nothing_that_the_next_quantize_keeps(tiny_artifact, tmp_path):
    sys_tmp = tmp_path / "system-tmp"
    sys_tmp.mkdir()
    out = tmp_path / "q"
    env = {**_env(sys_tmp), "EDGEFORMER_NO_CACHE": "1", "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "edgeformer.cli.app", "quantize", str(tiny_artifact), "--calib", "synthetic"]
    run = subprocess.Popen([*args, "-o", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".q.edgeformer-tmp-*")) and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.05)
        assert run.poll() is None, "quantize finished before it could be killed"
        os.kill(run.pid, signal.SIGKILL)
    finally:
        run.wait(timeout=60)
    left = [p for p in [*tmp_path.iterdir(), *sys_tmp.iterdir()] if owner_of(p.name) == (HOST, run.pid)]
    assert left and not out.exists()
    done = subprocess.run([*args, "-o", str(out), "--no-search"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [p for p in left if p.exists()] == []
    # ORT's own pre-processing folder (pre.quant.*) is made inside our scratch folder, so it goes with it
    assert [p.name for p in sys_tmp.iterdir() if p.name.startswith("pre.quant.")] == []
    Artifact.load(out)


# --- a disk that fills up mid-write ------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (needs root and a kernel that lets this process mount one; skipped with the reason)."""
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no `mount` command to make a 2 MiB tmpfs")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a 2 MiB tmpfs here (mount -t tmpfs -o size=2m: {proc.stderr.strip()})")
    try:
        yield mnt
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["umount", str(mnt)], check=False)


def test_disk_full_mid_artifact_write_is_a_clear_error_and_keeps_the_previous_artifact(small_disk):
    from test_artifact import write_artifact

    dest = small_disk / "art"
    before = write_artifact(dest)
    needed = rf"no space left writing {dest}: it needed more than the 2\.\d MB written before the disk filled"
    with pytest.raises(DiskFullError, match=needed) as e, ArtifactWriter(dest, overwrite=True) as w:
        (w.dir / "model.onnx").write_bytes(b"\0" * (3 << 20))  # 3 MiB on a 2 MiB disk
    assert e.value.exit_code == 5 and "free some space or write elsewhere (--out)" in str(e.value)
    assert sorted(p.name for p in small_disk.iterdir()) == ["art"]  # the temp folder is gone
    assert Artifact.load(dest).manifest == before.manifest


def test_disk_full_writing_a_report_removes_its_temp_file(small_disk):
    report = small_disk / "report.md"
    report.write_text("the previous report\n")
    with pytest.raises(DiskFullError, match=rf"no space left writing {report}"):
        write_text_atomic(report, "x" * (3 << 20))
    assert sorted(p.name for p in small_disk.iterdir()) == ["report.md"]
    assert report.read_text() == "the previous report\n"


def test_disk_full_during_a_cli_step_is_one_line_exit_5_and_nothing_is_left(tiny_artifact, small_disk):
    # fill the disk but for a few kB: the quantized model cannot fit
    filler = small_disk / "filler.bin"
    with contextlib.suppress(OSError), filler.open("wb") as f:
        f.write(b"\0" * ((2 << 20) - (16 << 10)))
    out = small_disk / "q"
    proc = cli("quantize", str(tiny_artifact), "--calib", "synthetic", "--no-search", "-o", str(out), cache=False)
    assert proc.returncode == 5 and "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error (")]  # after the synthetic-data warning
    assert len(errors) == 1 and errors[0].startswith(f"error (DiskFullError): no space left writing {out}: ")
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler.bin"]


def test_make_scratch_dir_names_its_owner(tmp_path):
    path = make_scratch_dir("calib", tmp_path)
    assert path.name.startswith(f"edgeformer-calib-h{HOST}-p{os.getpid()}-") and owner_of(path.name) == (
        HOST,
        os.getpid(),
    )


def test_a_full_system_temp_folder_is_exit_5_too(tiny_artifact, small_disk, tmp_path):
    filler = small_disk / "filler.bin"
    with contextlib.suppress(OSError), filler.open("wb") as f:
        f.write(b"\0" * ((2 << 20) - (16 << 10)))
    env = {**os.environ, "TMPDIR": str(small_disk), "EDGEFORMER_NO_CACHE": "1", "OMP_NUM_THREADS": "1"}
    args = ["quantize", str(tiny_artifact), "--calib", "synthetic", "--no-search", "-o", str(tmp_path / "q")]
    proc = subprocess.run([sys.executable, "-m", "edgeformer.cli.app", *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 5 and "Traceback" not in proc.stderr, proc.stderr
    assert "error (DiskFullError): no space left writing" in proc.stderr and "point TMPDIR to a disk" in proc.stderr
    assert not (tmp_path / "q").exists()
