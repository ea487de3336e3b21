"""``executor=ray`` (benchmark/ray_executor.py): a local Ray instance of two single-CPU workers.

Ray starts in seconds and each worker imports Lightning, so there are three Ray runs: one
whose workers die, one whose driver (a ``python -m benchmark run`` process) is killed
mid-sweep, and its rerun; the two complete ones drive from this process. The checks without a
Ray instance come first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.config import compose
from benchmark.errors import BenchmarkError
from benchmark.results import read_records
from tests.conftest import tiny_overrides

ROOT = Path(__file__).resolve().parent.parent
ray = pytest.importorskip("ray")

RAY = ["executor=ray", "executor.num_cpus=2", "executor.cpus_per_cell=1"]

# a user's methods whose Ray worker dies in the ratio-0.1 group (a fresh worker imports Lightning
# again: seconds each): `crash_once` on its first attempt only, `crash_always` on every attempt
# (one line per attempt in a marker file); in the ratio-0.3 group both are plain fine-tuning
CRASHING = '''
import os, signal
from pathlib import Path
from benchmark.losses import ce
from benchmark.module import METHODS, UnlearnModule


def _die(name, once, data):
    if 5 * len(data.forget) > len(data.forget) + len(data.retain):
        return
    path = Path(os.environ["CRASH_MARKERS"]) / name
    if once and path.exists():
        return
    with open(path, "a") as f:
        f.write("attempt\\n")
    os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer or a lost node would


class _Crash(UnlearnModule):
    streams = ("retain",)
    once = True

    def unlearn_step(self, batch):
        _die(type(self).__name__, self.once, self.data)
        b = batch["retain"]
        return {"loss": ce(self.net(b.x), b.y)}


@METHODS.register("crash_once")
class CrashOnce(_Crash):
    once = True


@METHODS.register("crash_always")
class CrashAlways(_Crash):
    once = False
'''


def _env(tmp: Path) -> dict[str, str]:
    path = os.pathsep.join([str(tmp / "pkg"), str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
            "PYTHONUNBUFFERED": "1", "CRASH_MARKERS": str(tmp / "markers"), "RAY_AUTH_MODE": "disabled"}


def _start(tmp: Path, args: list[str], name: str) -> tuple[subprocess.Popen, Path]:
    log = tmp / f"{name}.txt"
    with open(log, "wb") as f:
        # its own session: whatever it starts (Ray) can be cleaned up by its group at the end
        p = subprocess.Popen([sys.executable, "-m", "benchmark", "run", *args], cwd=ROOT, env=_env(tmp),
                             stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    return p, log


def _reap(p: subprocess.Popen) -> None:
    """Ends what is left of the process group this test started (nothing, when Ray cleaned up)."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    p.wait()


def _args(tmp: Path, *extra: str) -> list[str]:
    return [*tiny_overrides(tmp, *extra), *RAY]


# -- without Ray -------------------------------------------------------------------------------

@pytest.mark.parametrize("override, message", [
    ("executor=spark", "executor.name=spark is not one of local|ray"),
    ("executor.gpus_per_cell=2", "executor.gpus_per_cell=2 gives one cell several GPUs"),
    ("executor.cpus_per_cell=0", "executor.cpus_per_cell=0 must be > 0"),
    ("executor.max_retries=-1", "executor.max_retries=-1 is outside [0, 100]"),
    ("executor.share=nfs", "executor.share=nfs is not one of object|cache"),
    ("trainer.devices=2", "trainer.devices=2 splits one cell across devices (DDP), but executor=ray"),
])
def test_a_bad_executor_setting_is_one_line_naming_the_fix(tmp_path, override, message):
    args = tiny_overrides(tmp_path, "executor=ray", override)
    with pytest.raises(BenchmarkError) as e:
        compose(args)
    assert message in str(e.value) and "\n" not in str(e.value) and "; " in str(e.value)


def test_without_ray_installed_executor_ray_says_how_to_install_it(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(BenchmarkError, match=r"executor=ray needs Ray, which is not installed; pip install "):
        compose(tiny_overrides(tmp_path, "executor=ray"))
    compose(tiny_overrides(tmp_path))  # executor=local needs no Ray


# -- a Ray instance of two single-CPU workers --------------------------------------------------

@pytest.fixture
def crash_methods(tmp_path, monkeypatch):
    """The crashing methods, importable here and in Ray's workers (which inherit this environment);
    unregistered afterwards, so no later test sees them."""
    from benchmark.module import METHODS

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "crash_methods.py").write_text(CRASHING)
    (tmp_path / "markers").mkdir()
    for k, v in _env(tmp_path).items():
        if k in ("PYTHONPATH", "CRASH_MARKERS", "RAY_AUTH_MODE"):
            monkeypatch.setenv(k, v)
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    yield
    for name in ("crash_once", "crash_always"):
        METHODS._items.pop(name, None)
    sys.modules.pop("crash_methods", None)


@pytest.mark.slow
def test_a_killed_worker_is_retried_then_recorded_and_no_reference_is_trained_twice(tmp_path, crash_methods,
                                                                                    capsys):
    """Two groups (ratios) that share theta_o; a cell whose worker dies once succeeds on its
    retry, one whose worker always dies is recorded as failed with the cause after
    1 + max_retries attempts, and the sweep goes on. (The driver runs in this process.)"""
    from benchmark.cli import main

    args = _args(tmp_path, "imports=[crash_methods]", "methods=[finetune,crash_once,crash_always]",
                 "forget.ratios=[0.1,0.3]", "method_defaults.epochs=1", "attack.enabled=false",
                 "executor.max_retries=1")
    rc = main(["run", *args])
    out = capsys.readouterr().out
    assert rc == 1, out  # a failed cell: status 1, as with executor=local
    recs = read_records(tmp_path / "out").records
    by = {(r["method"], r["ratio"]): r for r in recs}
    assert len(recs) == 6 and len(by) == 6, out
    assert [k for k, r in by.items() if r["status"] != "ok"] == [("crash_always", 0.1)], out
    failed = by[("crash_always", 0.1)]
    assert failed["metrics"] == {} and failed["split_hash"] == by[("finetune", 0.1)]["split_hash"]
    assert "its Ray task failed 2 time(s) (executor.max_retries=1): WorkerCrashedError" in failed["error"]
    attempts = {f.name: f.read_text().count("attempt") for f in (tmp_path / "markers").iterdir()}
    assert attempts == {"CrashOnce": 1, "CrashAlways": 2}  # killed once then ok; killed 1 + max_retries times
    assert by[("crash_once", 0.1)]["metrics"] == by[("finetune", 0.1)]["metrics"] | {
        k: v for k, v in by[("crash_once", 0.1)]["metrics"].items() if k.startswith("time/")}
    # the two groups share theta_o (seed 0): trained once by its own task; one oracle per group
    assert "[ray] 3 reference models trained" in out and "trained twice" not in out, out
    assert len(list((tmp_path / "cache" / "models").glob("original-*.pt"))) == 1
    # the metrics of the ok cells are those of the local executor (the determinism contract)
    local = tmp_path / "local"
    keep = [a for a in args if not a.startswith(("executor", "output_dir", "methods", "imports"))]
    assert main(["run", *keep, "methods=[finetune]", f"output_dir={local}"]) == 0
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from compare_records import compare
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    ray_ft = tmp_path / "ray_ft"
    ray_ft.mkdir()
    (ray_ft / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs if r["method"] == "finetune"))
    assert compare(local, ray_ft) == []


@pytest.mark.slow
def test_killing_the_driver_mid_sweep_then_rerunning_loses_and_duplicates_nothing(tmp_path, monkeypatch, capsys):
    args = _args(tmp_path, "methods=[original,retrain,finetune,l1_sparse]", "forget.ratios=[0.1,0.3]",
                 "attack.enabled=false")
    results = tmp_path / "out" / "results.jsonl"
    p, log = _start(tmp_path, args, "first")
    try:
        deadline = time.monotonic() + 180
        while not (results.exists() and len(read_records(tmp_path / "out").records) >= 2):
            assert p.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "no record in time"
            time.sleep(0.05)
        os.kill(p.pid, signal.SIGKILL)  # the driver alone, mid-sweep
        p.wait(timeout=30)
        kept = [json.loads(x) for x in results.read_bytes().splitlines() if x.strip()]
        assert 2 <= len(kept) < 8, "the kill came after the sweep ended; make its cells longer"
        # the same command again (its driver in this process): only the missing cells run
        from benchmark.cli import main

        monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
        assert main(["run", *args]) == 0
        # meanwhile the Ray instance the killed driver started went with it: workers, raylet and
        # GCS within seconds (Ray's two agents notice last, within about a minute: reaped below)
        assert not _group(p.pid) - AGENTS, f"Ray processes outlived the killed driver: {_group(p.pid)}"
    finally:
        _reap(p)
    assert f"({len(kept)} done already)" in capsys.readouterr().out
    lines = [json.loads(x) for x in results.read_bytes().splitlines() if x.strip()]
    ids = [r["cell_id"] for r in lines]
    assert len(ids) == len(set(ids)) == 8  # every cell once: none lost, none written twice
    assert all(r["status"] == "ok" for r in lines)
    assert {r["cell_id"]: r["time"] for r in lines if r["cell_id"] in {k["cell_id"] for k in kept}} == \
        {k["cell_id"]: k["time"] for k in kept}  # the first run's records were kept, not rerun


AGENTS = {"ray::DashboardAgent", "ray::RuntimeEnvAgent"}


def _group(pgid: int) -> set[str]:
    """The command names of the live processes of a process group."""
    names = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                names.add((stat.parent / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace"))
        except (OSError, IndexError, ValueError):
            continue
    return names
