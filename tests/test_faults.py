"""Hostile inputs and faults: signals, damaged caches, reference identity, full disks.

Every case here failed before the fix (see the issue): SIGTERM exited 0, Ctrl-C exited 1
without a word, caches of another model or split were trusted, devices=2 and devices=1
shared a reference, temporary files were written by hand in two places.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.config import compose
from benchmark.data.splits import Split, make_split
from benchmark.io import atomic_write_bytes
from benchmark.reference import reference_key
from benchmark.results import append_record, read_records
from tests.conftest import tiny_overrides

ROOT = Path(__file__).resolve().parent.parent
TINY = ["dataset=digits", "data.train_subset=300", "data.recipe.epochs=3", "logger=none", "trainer.accelerator=cpu"]


def _args(tmp: Path, *extra: str) -> list[str]:
    return [*TINY, f"output_dir={tmp}/out", f"cache_dir={tmp}/cache", *extra]


def _records(tmp: Path) -> dict[str, dict]:
    return {r["method"]: r for r in read_records(tmp / "out").records}


def _lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]


def _interrupt(tmp: Path, args: list[str], sig: int, after: str, delay: float = 0.0,
               timeout: float = 90) -> tuple[int, str, str, float]:
    """Runs ``python -m benchmark run ARGS``, sends ``sig`` ``delay`` s after a stdout line
    matching ``after``; returns (status, stdout, stderr, seconds from the signal to the exit)."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
    out, err = tmp / "stdout.txt", tmp / "stderr.txt"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        p = subprocess.Popen([sys.executable, "-m", "benchmark", "run", *args], cwd=ROOT, env=env,
                             stdout=fo, stderr=fe)
        try:
            deadline = time.monotonic() + timeout
            while not re.search(after, out.read_text(errors="replace"), re.M):
                assert p.poll() is None, f"exited ({p.returncode}) before {after!r}:\n{out.read_text()}\n{err.read_text()}"
                assert time.monotonic() < deadline, f"no {after!r} in time"
                time.sleep(0.05)
            time.sleep(delay)
            t0 = time.monotonic()
            p.send_signal(sig)
            rc = p.wait(timeout=60)
            return rc, out.read_text(), err.read_text(), time.monotonic() - t0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()


def _assert_clean_stop(tmp: Path, rc: int, stderr: str, sig: int) -> str:
    assert rc == 128 + sig, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    name = signal.Signals(sig).name
    assert lines[0].startswith(f"interrupted by {name} after ") and "rerun the same command to resume" in lines[0]
    # only complete records, and no temporary file anywhere under the output folder
    path = tmp / "out" / "results.jsonl"
    raw = path.read_bytes() if path.exists() else b""
    assert all(json.loads(line)["status"] == "ok" for line in raw.splitlines() if line.strip())
    assert not [p for p in (tmp / "out").rglob("*.tmp")]
    return lines[0]


# -- signals ------------------------------------------------------------------------------------

LONG = ["methods=[original,ieu]", "method_args.ieu.epochs=30", "attack.enabled=false"]


def test_sigterm_during_a_fit_exits_143_and_the_rerun_resumes_to_the_same_records(tmp_path):
    rc, out, err, _ = _interrupt(tmp_path, _args(tmp_path, *LONG), signal.SIGTERM, r"^\[run\] ieu", delay=0.5)
    line = _assert_clean_stop(tmp_path, rc, err, signal.SIGTERM)
    assert "after 1 of 2 cells (ieu ratio=0.1 seed=0 abandoned, nothing written for it)" in line
    assert f"{tmp_path}/out/results.jsonl" in line
    assert set(_records(tmp_path)) == {"original"}
    assert not (tmp_path / "out" / "diagnostics").exists() or not list((tmp_path / "out" / "diagnostics").iterdir())
    # the same command again resumes; the result equals an uninterrupted sweep's
    assert main(["run", *_args(tmp_path, *LONG)]) == 0
    whole = tmp_path / "whole"
    assert main(["run", *_args(whole, *LONG)]) == 0
    resumed, fresh = _records(tmp_path), _records(whole)
    assert set(resumed) == set(fresh) == {"original", "ieu"}
    for method in resumed:
        assert resumed[method]["cell_id"] == fresh[method]["cell_id"]
        for key in ("eval/ua", "eval/ra", "eval/ta", "eval/mia/loss_acc", "weight/dist_original"):
            assert resumed[method]["metrics"][key] == pytest.approx(fresh[method]["metrics"][key], abs=1e-9), key
    assert len(_lines(tmp_path / "out" / "results.jsonl")) == 2


def test_sigint_during_a_fit_exits_130_with_one_line(tmp_path):
    rc, _, err, _ = _interrupt(tmp_path, _args(tmp_path, *LONG), signal.SIGINT, r"^\[run\] ieu", delay=0.5)
    line = _assert_clean_stop(tmp_path, rc, err, signal.SIGINT)
    assert "ieu ratio=0.1 seed=0 abandoned" in line
    assert set(_records(tmp_path)) == {"original"}


def test_sigint_right_after_a_cell_keeps_that_cell(tmp_path):
    args = _args(tmp_path, "methods=[original,retrain,ieu]", "method_args.ieu.epochs=30", "attack.enabled=false")
    rc, _, err, _ = _interrupt(tmp_path, args, signal.SIGINT, r"^\[1/3\] original")
    line = _assert_clean_stop(tmp_path, rc, err, signal.SIGINT)
    done = _records(tmp_path)
    assert "original" in done and "ieu" not in done
    assert f"after {len(done)} of 3 cells" in line


def test_sigterm_under_ddp_spawn_does_not_hang(tmp_path):
    # the signal reaches the reference training, which runs in two spawned workers
    args = _args(tmp_path, "methods=[original]", "trainer.devices=2", "attack.enabled=false")
    rc, _, err, seconds = _interrupt(tmp_path, args, signal.SIGTERM, r"^\[bench\]", delay=2.0)
    line = _assert_clean_stop(tmp_path, rc, err, signal.SIGTERM)
    assert "after 0 of 1 cells" in line
    assert seconds < 20


def test_a_signal_while_a_cell_is_written_finishes_that_cell_then_stops(tmp_path, monkeypatch, capsys):
    """Deterministic: SIGTERM arrives in the middle of writing a cell's files (between its
    curves and its record); the cell is written whole, then the run stops."""
    import benchmark.stages.sinks as sinks
    from benchmark.io import received_signal

    real = sinks.append_record

    def append_then_signal(out, record):
        os.kill(os.getpid(), signal.SIGTERM)  # delivered now, to the handler of `run`
        assert received_signal() == signal.SIGTERM
        return real(out, record)

    monkeypatch.setattr(sinks, "append_record", append_then_signal)
    rc = main(["run", *_args(tmp_path, "methods=[original,retrain]", "attack.max_steps=4")])
    err = capsys.readouterr().err
    assert rc == 143
    assert [ln for ln in err.splitlines() if ln.strip()] == [
        f"interrupted by SIGTERM after 1 of 2 cells; finished cells are in {tmp_path}/out/results.jsonl; "
        "rerun the same command to resume"]
    (rec,) = read_records(tmp_path / "out").records
    assert rec["method"] == "original" and rec["status"] == "ok"
    assert json.loads((tmp_path / "out" / "curves" / f"{rec['cell_id']}.json").read_text())["curves"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored after the command


# -- caches tied to what they hold ----------------------------------------------------------------

def _cache_files(tmp: Path, folder: str) -> list[Path]:
    return sorted((tmp / "cache" / folder).glob("*"))


def test_an_outputs_file_of_another_model_is_rebuilt(tmp_path, capsys):
    args = _args(tmp_path, "methods=[original,retrain]", "attack.enabled=false")
    assert main(["run", *args]) == 0
    first = _records(tmp_path)
    capsys.readouterr()
    files = {p.name.split("-")[0]: p for p in _cache_files(tmp_path, "outputs")}
    files["original"].write_bytes(files["oracle"].read_bytes())  # the oracle's outputs over the original's
    (tmp_path / "out" / "results.jsonl").unlink()
    assert main(["run", *args]) == 0
    out = capsys.readouterr().out
    warned = [ln for ln in out.splitlines() if ln.startswith("warning: cached outputs")]
    assert warned == [f"warning: cached outputs {files['original']} were computed from another model; "
                      "recomputing them"]
    again = _records(tmp_path)
    for key, value in first["original"]["metrics"].items():
        if not key.startswith("time/"):
            assert again["original"]["metrics"][key] == value, key
    assert again["original"]["metrics"]["eval/ua"] != again["retrain"]["metrics"]["eval/ua"]


def test_cached_outputs_name_their_model_and_split(tmp_path, digits, capsys):
    from benchmark.data.transforms import BatchTransform
    from benchmark.evaluate import cached_outputs
    from benchmark.metrics.outputs import read_outputs
    from benchmark.models import build_model

    split = make_split(digits.train_y.numpy(), "random", 0.1, seed=0, train_subset=300)
    other = make_split(digits.train_y.numpy(), "random", 0.1, seed=1, train_subset=300)
    tf = BatchTransform(tuple(digits.mean), tuple(digits.std))
    torch.manual_seed(0)
    net = build_model("digits_mlp", digits.num_classes, digits.in_channels)
    path = tmp_path / "o.npz"
    cached_outputs(path, net, digits, split, tf, torch.device("cpu"))
    meta = read_outputs(path)[1]
    assert meta["split_sha256"] == split.sha256 and len(meta["model_sha256"]) == 64
    assert capsys.readouterr().out == ""
    cached_outputs(path, net, digits, split, tf, torch.device("cpu"))  # a hit: silent
    assert capsys.readouterr().out == ""
    cached_outputs(path, net, digits, other, tf, torch.device("cpu"))  # same size, other D_f: other split
    assert "were computed on another split" in capsys.readouterr().out
    path.write_bytes(path.read_bytes()[:200])  # truncated
    full = cached_outputs(path, net, digits, other, tf, torch.device("cpu"))
    assert "are corrupt" in capsys.readouterr().out and len(full["train"]) == len(other.train)


def _attack_plan(digits, attackers=("sgd", "adam")):
    from benchmark.callbacks.relearn import Levels, RelearnTarget
    from benchmark.data.transforms import BatchTransform
    from benchmark.models import build_model, trainable_state
    from benchmark.stages.references import AttackPlan

    split = make_split(digits.train_y.numpy(), "random", 0.1, seed=0, train_subset=300)
    f = torch.as_tensor(split.forget)
    tf = BatchTransform(tuple(digits.mean), tuple(digits.std))
    target = RelearnTarget(digits.train_x[f], digits.train_y[f], digits.train_x[f], digits.train_y[f], tf)
    torch.manual_seed(0)
    net = build_model("digits_mlp", digits.num_classes, digits.in_channels)
    cfgs = {"sgd": {"lr": 0.01, "momentum": 0.9, "batch_size": 16}, "adam": {"lr": 0.001, "batch_size": 16}}
    plan = AttackPlan(target, Levels(1.0, 2.0, 90.0, 50.0), {a: cfgs[a] for a in attackers},
                      dict.fromkeys(attackers, 4), dict.fromkeys(attackers, 2), 0, trainable_state(net), "attackkey")
    return plan, net


@pytest.mark.parametrize("content", [
    np.random.default_rng(0).bytes(64) + b"\xff\xfe",  # random bytes (UnicodeDecodeError before the fix)
    b'{"sgd":{},"adam":{}}',  # the old layout, empty curves
    b'{"reference":"ref","attack":"attackkey","curves":{"sgd":{},"adam":{}}}',
    b'{"sgd":{"steps":[0],"loss":["x"],"acc":[1]},"adam":{"steps":[0],"loss":[1],"acc":[1]}}',
    b"42",
    b"",
], ids=["random-bytes", "old-empty", "empty-curves", "bad-number", "42", "empty-file"])
def test_damaged_attack_curves_are_recomputed(tmp_path, digits, capsys, content):
    plan, net = _attack_plan(digits)
    path = tmp_path / "ref-attackkey.json"
    path.write_bytes(content)
    curves = plan.cached_run(path, net, torch.device("cpu"))
    out = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(out) == 1 and out[0].startswith(f"warning: cached attack curves {path} ") and \
        out[0].endswith("; recomputing them")
    assert set(curves) == {"sgd", "adam"} and all(c[0].steps for c in curves.values())
    again = plan.cached_run(path, net, torch.device("cpu"))  # now a silent hit
    assert capsys.readouterr().out == "" and again["sgd"][0].loss == curves["sgd"][0].loss
    stored = json.loads(path.read_text())
    assert stored["reference"] == "ref" and stored["attack"] == "attackkey"
    assert stored["attackers"] == ["adam", "sgd"] and len(stored["model_sha256"]) == 64


def test_attack_curves_of_another_reference_or_model_are_recomputed(tmp_path, digits, capsys):
    plan, net = _attack_plan(digits)
    path = tmp_path / "original-x-attackkey.json"
    plan.cached_run(path, net, torch.device("cpu"))
    copy = tmp_path / "oracle-x-attackkey.json"
    copy.write_bytes(path.read_bytes())  # the original's curves copied over the oracle's
    plan.cached_run(copy, net, torch.device("cpu"))
    assert "were made for another reference model" in capsys.readouterr().out
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    plan.cached_run(path, net, torch.device("cpu"))
    assert "were made from other weights" in capsys.readouterr().out
    only_sgd, _ = _attack_plan(digits, ("sgd",))
    only_sgd.cached_run(path, net, torch.device("cpu"))
    assert "were made by other attackers" in capsys.readouterr().out


def test_damaged_attack_curves_do_not_fail_the_original_cell(tmp_path, capsys):
    args = _args(tmp_path, "methods=[original]", "attack.max_steps=4", "retry_failed=true")
    assert main(["run", *args]) == 0
    for p in _cache_files(tmp_path, "attacks"):
        p.write_bytes(b'{"sgd":{},"adam":{}}' if "original" in p.name else np.random.default_rng(1).bytes(100))
    (tmp_path / "out" / "results.jsonl").unlink()
    capsys.readouterr()
    assert main(["run", *args]) == 0
    assert sum("warning: cached attack curves" in ln for ln in capsys.readouterr().out.splitlines()) == 2
    assert _records(tmp_path)["original"]["status"] == "ok"


def test_a_truncated_split_file_is_rebuilt(tmp_path, digits, capsys):
    split = make_split(digits.train_y.numpy(), "random", 0.1, seed=0, train_subset=300)
    path = split.save(tmp_path)
    assert Split.load(path).sha256 == split.sha256
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises((ValueError, OSError, EOFError, zipfile.BadZipFile)):
        Split.load(path)
    assert split.save(tmp_path) == path
    assert "is corrupt" in capsys.readouterr().out
    assert Split.load(path).sha256 == split.sha256
    other = make_split(digits.train_y.numpy(), "random", 0.1, seed=1, train_subset=300)
    other_path = other.save(tmp_path)
    path.write_bytes(other_path.read_bytes())  # a valid file of another split under this name
    split.save(tmp_path)
    assert "holds another split" in capsys.readouterr().out
    assert Split.load(path).sha256 == split.sha256
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".*"))


def test_a_damaged_decoded_dataset_is_rebuilt(tmp_path, digits, caplog):
    from benchmark.data.cache import cached_decode

    data_dir = tmp_path / "images"
    data_dir.mkdir()
    (data_dir / "a.png").write_bytes(b"x")
    builds = []

    def build():
        builds.append(1)
        return digits

    cached_decode(tmp_path / "cache", "digits", data_dir, build)
    (path,) = (tmp_path / "cache" / "decoded").glob("*.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    back = cached_decode(tmp_path / "cache", "digits", data_dir, build)
    assert len(builds) == 2 and torch.equal(back.train_x, digits.train_x)
    assert "is damaged" in caplog.text


# -- identity of references --------------------------------------------------------------------

def test_world_size_and_precision_change_the_reference_key_defaults_do_not(tmp_path, digits):
    split = make_split(digits.train_y.numpy(), "random", 0.1, seed=0, train_subset=300)

    def keys(*extra):
        cfg = compose(tiny_overrides(tmp_path, *extra))
        return reference_key("original", cfg, split, 0), reference_key("oracle", cfg, split, 0)

    default = keys()
    # the keys of before the fix: existing caches stay valid
    assert default == ("original-6fae45738c62c9525193", "oracle-25b33961ff01e7fb7b30")
    assert keys("trainer.precision=32") == keys("trainer.devices=[0]") == default
    two, bf16 = keys("trainer.devices=2"), keys("trainer.precision=bf16-mixed")
    assert len({default[0], two[0], bf16[0]}) == 3 and len({default[1], two[1], bf16[1]}) == 3


# -- temporary files and full disks ------------------------------------------------------------

def test_every_writer_uses_the_atomic_helper():
    """No hand-made temporary file, rename or direct write outside benchmark/io.py."""
    pattern = re.compile(r"os\.replace\(|np\.savez\(|tempfile\.|\.write_(?:text|bytes)\(|open\([^)]*['\"][wa]b?['\"]")
    offenders = []
    for path in sorted((ROOT / "benchmark").rglob("*.py")):
        if path.name == "io.py" and path.parent.name == "benchmark":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and "write-test" not in line and "import tempfile" not in line:
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    # results/store.py's check_writable probes the folder with mkstemp and removes it at once
    assert [o for o in offenders if "mkstemp(prefix=\".write-test-\"" not in o] == []


def _full_disk_for(monkeypatch, name: str) -> None:
    """fsync fails with ENOSPC for writes of ``name`` (after the bytes went to the temp file)."""
    real = os.fsync

    def fsync(fd):
        if name in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_disk_during_append_record_leaves_no_temp_file(tmp_path, monkeypatch):
    append_record(tmp_path, {"cell_id": "a", "status": "ok"})
    before = (tmp_path / "results.jsonl").read_bytes()
    _full_disk_for(monkeypatch, "results.jsonl")
    with pytest.raises(OSError) as e:
        append_record(tmp_path, {"cell_id": "b", "status": "ok"})
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "results.jsonl")
    assert (tmp_path / "results.jsonl").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".results.lock", "results.jsonl"]


@pytest.mark.parametrize("writer", ["split", "outputs", "bytes"])
def test_no_writer_leaves_a_temp_file_on_a_full_disk(tmp_path, monkeypatch, digits, writer):
    from benchmark.metrics import SplitOutputs, save_outputs

    _full_disk_for(monkeypatch, ".tmp")
    with pytest.raises(OSError):
        if writer == "split":
            make_split(digits.train_y.numpy(), "random", 0.1, seed=0, train_subset=300).save(tmp_path)
        elif writer == "outputs":
            save_outputs(tmp_path / "o.npz", {"test": SplitOutputs(np.zeros((2, 3)), np.zeros(2, int), np.zeros(2))})
        else:
            atomic_write_bytes(tmp_path / "f", b"x" * 100)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_during_a_run_is_one_line(tmp_path, monkeypatch, capsys):
    _full_disk_for(monkeypatch, "results.jsonl")
    rc = main(["run", *_args(tmp_path, "methods=[original]", "attack.enabled=false")])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 1
    assert err == [f"error: cannot write {tmp_path}/out/results.jsonl (No space left on device); free some "
                   "space, then rerun the same command to resume (finished cells are kept)"]
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".tmp")]


# -- results.jsonl read back -------------------------------------------------------------------

def test_damaged_and_duplicated_results_lines_do_not_crash_run_or_report(tmp_path, capsys):
    args = _args(tmp_path, "methods=[original]", "attack.enabled=false")
    assert main(["run", *args]) == 0
    path = tmp_path / "out" / "results.jsonl"
    good = path.read_bytes().splitlines()[0]
    path.write_bytes(b"\xff\xfe not utf-8\n42\n" + good + b"\n" + good + b"\n")
    capsys.readouterr()
    assert main(["run", *args]) == 0  # everything done already: nothing reruns
    out = capsys.readouterr().out
    assert "(1 done already)" in out
    assert main(["report", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "leaderboard.md" in captured.out
    records = read_records(tmp_path / "out")
    assert len(records) == 1 and records.skipped_lines == [1, 2]
    assert records.duplicates == {json.loads(good)["cell_id"]: 1}
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "original" in board
