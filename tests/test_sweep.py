"""The runner at scale: resume after SIGKILL, shards, DDP on two CPU processes, sweeps, W&B."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.config import compose, compose_grid
from benchmark.errors import BenchmarkError
from benchmark.results import read_results
from benchmark.runner import Runner
from tests.conftest import tiny_overrides

ROOT = Path(__file__).resolve().parent.parent
GRID = ["methods=[original,retrain,finetune,grad_ascent]", "seeds=[0,1,2]", "attack.max_steps=10",
        "method_args.finetune.epochs=2"]


def _science(records: list[dict]) -> dict[str, dict]:
    """Every metric except wall-clock times, by cell id."""
    return {r["cell_id"]: {k: v for k, v in r["metrics"].items() if not k.startswith("time/")
                           and not k.endswith("_s")} for r in records}


def _env() -> dict[str, str]:
    return {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
def test_sigkill_mid_sweep_then_resume(tmp_path):
    args = [sys.executable, "-m", "benchmark", "run", *tiny_overrides(tmp_path, *GRID)]
    out = tmp_path / "out" / "results.jsonl"
    proc = subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 5):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {r["cell_id"]: r for r in read_results(tmp_path / "out")}
    assert 5 <= len(before) < 12, "the kill must land mid-sweep"
    again = subprocess.run(args, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"({len(before)} done already)" in again.stdout
    lines = out.read_text().splitlines()
    records = [json.loads(x) for x in lines]  # every line parses
    assert len(records) == 12 == len({r["cell_id"] for r in records})  # no duplicates
    for r in records:  # finished cells were not recomputed
        if r["cell_id"] in before:
            assert r == before[r["cell_id"]]
    # the same table as an uninterrupted sweep with the same seeds
    clean = tmp_path / "clean"
    Runner(compose(tiny_overrides(clean, *GRID))).run()
    assert _science(records) == _science(read_results(clean / "out"))


def test_two_shards_fill_one_directory_like_the_unsharded_sweep(tmp_path):
    shared = tmp_path / "shared"
    for i in (0, 1):
        Runner(compose(tiny_overrides(shared, *GRID, f"shard={i}/2"))).run()
    union = read_results(shared / "out")
    whole = tmp_path / "whole"
    Runner(compose(tiny_overrides(whole, *GRID))).run()
    assert len(union) == 12 == len({r["cell_id"] for r in union})
    assert _science(union) == _science(read_results(whole / "out"))


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_one(tmp_path):
    """finetune under DDP (2 CPU processes, gloo, batch 16 each) vs 1 process (batch 32)."""
    common = ["methods=[finetune]", "seeds=[0]", "attack.enabled=false", "method_args.finetune.epochs=5",
              "method_args.finetune.lr=0.05", "trainer.cpu_threads=1"]
    one = Runner(compose(tiny_overrides(tmp_path / "one", *common, "method_args.finetune.batch_size=32"))).run()
    two = Runner(compose(tiny_overrides(tmp_path / "two", *common, "method_args.finetune.batch_size=16",
                                        "trainer.devices=2"))).run()
    assert two[0]["status"] == "ok", two[0].get("error")
    assert two[0]["world_size"] == 2 and two[0]["effective_batch"] == one[0]["effective_batch"] == 32
    m1, m2 = one[0]["metrics"], two[0]["metrics"]
    # the unlearned weights moved (DDP trained and sent them back) ...
    assert m2["weight/dist_original"] > 0.5 * m1["weight/dist_original"] > 0
    # ... and land where one process lands, within the noise of a different data order
    for k in ("eval/ra", "eval/ta", "eval/ua"):
        assert abs(m1[k] - m2[k]) <= 3.0, (k, m1[k], m2[k])
    assert m2["time/unlearn_s"] > 0


def _config_copy(tmp_path: Path, sweep_text: str) -> Path:
    """A user's own config folder (config_path=[...]) holding sweep/mine.yaml."""
    cdir = tmp_path / "configs"
    (cdir / "sweep").mkdir(parents=True)
    (cdir / "sweep" / "mine.yaml").write_text(sweep_text)
    return cdir


def test_sweep_expands_datasets_and_scenarios(tmp_path):
    cdir = _config_copy(tmp_path, "datasets: [digits]\nscenarios:\n  - {scenario: random, ratios: [0.1, 0.3]}\n"
                                  "  - {scenario: class, classes: [3]}\nseeds: [0, 1]\nmethods: [finetune]\n")
    cfgs = compose_grid(["sweep=mine", "seeds=[5]", f"config_path=[{cdir}]"])
    assert [(c.forget.scenario, list(c.forget.ratios)) for c in cfgs][0] == ("random", [0.1, 0.3])
    assert cfgs[1].forget.scenario == "class" and list(cfgs[1].forget.classes) == [3]
    assert all(list(c.seeds) == [5] for c in cfgs)  # the command line wins over the sweep


@pytest.mark.parametrize(("text", "message"), [
    ("datasets: [digits]\nscenarios: []\nseeds: [0]\nmethods: all\n", "`scenarios` must be a non-empty list"),
    ("datasets: digits\nscenarios: [{scenario: random, ratios: [0.1]}]\nseeds: [0]\nmethods: all\n",
     "`datasets` must be a non-empty list"),
    ("datasets: [digits]\nscenarios: [{scenario: random, ratios: 0.1}]\nseeds: [0]\nmethods: all\n",
     "`ratios` must be a list"),
    ("datasets: [digits\n", "cannot read sweep file"),
    ("datasets: [digits]\nscenarioz: []\nseeds: [0]\nmethods: all\n", "unknown key 'scenarioz'"),
])
def test_bad_sweeps_are_one_line_errors(tmp_path, text, message):
    cdir = _config_copy(tmp_path, text)
    with pytest.raises(BenchmarkError, match=message) as e:
        compose_grid(["sweep=mine", f"config_path=[{cdir}]"])
    assert "\n" not in str(e.value)


def test_bad_shard_is_one_line_error(tmp_path):
    with pytest.raises(BenchmarkError, match="shard=3/2 is out of range"):
        Runner(compose(tiny_overrides(tmp_path, "shard=3/2")))


def test_failed_cells_are_recorded_and_retried_only_when_asked(tmp_path):
    # a learning rate that diverges: the cell fails, the sweep goes on
    grid = ["methods=[original,grad_ascent]", "method_args.grad_ascent.lr=1e6", "attack.enabled=false"]
    recs = Runner(compose(tiny_overrides(tmp_path, *grid))).run()
    status = {r["method"]: r["status"] for r in recs}
    assert status == {"original": "ok", "grad_ascent": "failed"}
    assert "non-finite" in next(r for r in recs if r["method"] == "grad_ascent")["error"]
    again = Runner(compose(tiny_overrides(tmp_path, *grid)))
    assert again.run() == recs  # not retried
    retried = Runner(compose(tiny_overrides(tmp_path, *grid, "retry_failed=true"))).run()
    assert len(read_results(tmp_path / "out")) == 2 and retried[1]["time"] != recs[1]["time"]


@pytest.mark.slow
def test_offline_wandb_one_run_per_cell_matches_results(tmp_path):
    grid = ["methods=[original,retrain,finetune]", "attack.max_steps=10", "logger.name=wandb",
            "logger.mode=offline"]
    overrides = [o for o in tiny_overrides(tmp_path, *grid) if o != "logger=none"]
    records = Runner(compose(overrides)).run()
    runs = sorted((tmp_path / "out" / "wandb").glob("offline-run-*"))
    assert len(runs) == len(records) + 1  # one per cell, plus the leaderboard run
    wandb_bin = Path(sys.executable).with_name("wandb")
    by_id = {r["cell_id"]: r for r in records}
    seen = set()
    for run in runs:
        out = subprocess.run([str(wandb_bin), "leet", "inspect", "--summary", "--json", str(run)],
                             capture_output=True, text=True, timeout=60, env=_env())
        summary = json.loads(out.stdout)
        cell = summary["config"].get("cell_id")
        if cell is None:
            continue  # the leaderboard run
        seen.add(cell)
        rec = by_id[cell]
        assert summary["config"]["split_hash"] == rec["split_hash"]
        for k in ("eval/ua", "eval/ra", "eval/ta", "gap/avg"):
            assert summary["summary"][k] == pytest.approx(rec["metrics"][k])
    assert seen == set(by_id)
