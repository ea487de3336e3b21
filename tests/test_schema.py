"""Every bad config value: exit status 2, one line on stderr, before any data loads or any
file is written (benchmark/schema/). Each case gave a traceback, ran work first, or was
silently reinterpreted before the schema."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import benchmark.schema.rules  # noqa: F401  (schema.rules.os is patched below)
from benchmark import schema
from benchmark.cli import main
from benchmark.config import compose_grid
from benchmark.errors import BenchmarkError

CASES = [
    # tracebacks
    (["forget.ratios=0.1"], "forget.ratios=[0.1]"),
    (["seeds=abc"], "seeds=[0]"),
    (["seeds=0"], "seeds=[0]"),
    (["seeds=[-1]"], "seeds=[-1] holds -1"),
    (["seeds=[4294967296]"], "4294967295"),
    (["seeds=[0"], "cannot parse 'seeds=[0'"),
    (["forget.scenario=class", "forget.classes=[abc]"], "not an integer"),
    (["forget.scenario=subclass", "forget.classes=[11]"], "classes 0..9"),
    (["data.train_subset=1"], "data.train_subset=1 leaves 0 training examples"),
    (["data.train_subset=abc"], "data.train_subset=abc is not an integer"),
    (["forget.seed=-1"], "forget.seed=-1"),
    (["data.split_seed=-1"], "data.split_seed=-1"),
    (["attack.attackers=[]"], "attack.attackers=[] is empty"),
    (["method_defaults.batch_size=abc"], "method_defaults.batch_size=abc is not an integer"),
    (["trainer.cpu_threads=abc"], "trainer.cpu_threads=abc"),
    (["output_dir="], "output_dir= has no value"),
    (["cache_dir=null"], "cache_dir=null"),
    (["trainer.devices=abc"], "trainer.devices=abc"),
    (["eval.batch_size=0"], "eval.batch_size=0"),
    # caught only after work
    (["forget.scenario=class", "forget.classes=[11]"], "forget.classes=[11] names class 11"),
    (["forget.ratios=[0.1,0.999]"], "nothing retained"),
    (["seeds=[0,-1]"], "holds -1"),
    (["attack.attackers=[sgdd]"], "did you mean 'sgd'"),
    (["method_args.finetune.batch_size=0"], "method_args.finetune.batch_size=0 must be >= 1"),
    (["method_args.finetune.lr=-1"], "method_args.finetune.lr=-1 must be > 0"),
    (["trainer.precision=7"], "trainer.precision=7 is not one of"),
    # silently reinterpreted
    (["forget.scenario=class", "forget.classes=[2.5]"], "holds 2.5"),
    (["forget.scenario=class", "forget.classes=[]"], "forget.classes=[] is empty"),
    (["forget.scenario=subclass", "forget.classes=[1,2]"], "exactly one"),
    (["methods=finetune"], "methods=[finetune]"),
    (["seeds=[0,0]"], "lists 0 twice"),
    (["forget.ratios=[0.1,0.1]"], "lists 0.1 twice"),
    (["attack.delta=nan"], "attack.delta=nan is not a number"),
    (["attack.delta_acc=1.5"], "attack.delta_acc=1.5"),
    (["attack.repeats=0"], "attack.repeats=0"),
    (["attack.budget=orcale"], "attack.budget=orcale"),
    (["attack.budget_factor=0"], "attack.budget_factor=0"),
    (["attack.cap_epochs=0"], "attack.cap_epochs=0"),
    (["eval.population.k=2"], "eval.population.k=2 is too small"),
    (["eval.population.k=-1"], "eval.population.k=-1"),
    (["eval.population.k=abc"], "eval.population.k=abc"),
    (["eval.population.retain_sample=-3"], "eval.population.retain_sample=-3"),
    (["attack.delta=.nan"], "not a finite number"),
    (["attack.delta=.inf"], "not a finite number"),
    (["attack.max_steps=-5"], "attack.max_steps=-5"),
    (["--shard"], "shard has no value"),
    (["shard="], "shard has no value"),
    # more of the same families
    (["method_args.finetune.optimizer=sgdd"], "not one of sgd|adam"),
    (["method_args.finetune.epochs=2.5"], "not an integer"),
    (["method_defaults.momentum=1.5"], "is outside [0, 1)"),
    (["data.recipe.lr=0"], "data.recipe.lr=0 must be > 0"),
    (["forget.scenario=random", "forget.classes=[3]"], "not read with forget.scenario=random"),
    (["forget.scenario=indices"], "forget.indices_file"),
    (["trainer.devices=0"], "trainer.devices=0"),
    (["logger.mode=sometimes"], "logger.mode=sometimes"),
    (["data.val_fraction=1"], "data.val_fraction=1"),
    (["methods=[finetune,finetune]"], "lists finetune twice"),
    # found by tests/test_fuzz_config.py (nightly profile)
    (["config_path=true"], "config_path=true is not a list"),
    (["imports=true"], "imports=true is not a list"),
    (["attack.attacker_args=[[0]]"], "a value does not fit its key"),
    (["imports=[.x]"], "cannot import '.x'"),
]


def _run(capsys, tmp_path: Path, args: list[str]) -> str:
    base = ["run", f"cache_dir={tmp_path}/cache", "logger=none", "methods=[finetune]"]
    if not any(a.startswith("output_dir=") for a in args):
        base.append(f"output_dir={tmp_path}/out")
    base = [a for a in base if not (a.startswith("methods=") and any(b.startswith("methods=") for b in args))]
    code = main([*base, *args])
    cap = capsys.readouterr()
    assert code == 2, cap
    assert cap.err.startswith("error: ") and cap.err.count("\n") == 1 and "Traceback" not in cap.err, cap.err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()  # nothing written, nothing loaded
    assert "[run]" not in cap.out and "[data]" not in cap.out
    return cap.err


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_value_is_one_line_before_any_work(capsys, tmp_path, args, expected):
    err = _run(capsys, tmp_path, args)
    assert expected in err


def test_cache_dir_that_is_a_file(capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    assert "is a file" in _run(capsys, tmp_path, [f"cache_dir={tmp_path}/f"])
    assert "is a file" in _run(capsys, tmp_path, [f"cache_dir={tmp_path}/f/sub"])


def test_cache_dir_read_only(capsys, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(schema.rules.os, "access", lambda p, mode: False if Path(p) == ro else real(p, mode))
    assert "not writable" in _run(capsys, tmp_path, [f"cache_dir={ro}/c"])


def _sweep(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "cfg" / "sweep").mkdir(parents=True, exist_ok=True)
    (tmp_path / "cfg" / "sweep" / "mine.yaml").write_text(text)
    return ["sweep=mine", f"config_path=[{tmp_path}/cfg]"]


OK_SCEN = "scenarios: [{scenario: random, ratios: [0.1]}]\n"


@pytest.mark.parametrize(("text", "expected"), [
    ("datasets: [digits]\nscenarios: [{scenario: random, ratios: 0.1}]\nseeds: [0]\nmethods: all\n",
     "`ratios` must be a list"),
    ("datasets: digits\n" + OK_SCEN + "seeds: [0]\nmethods: all\n", "`datasets` must be a non-empty list"),
    ("datasets: [digits]\n" + OK_SCEN + "seeds: [a]\nmethods: all\n", "seeds: [a] holds a"),
    ("datasets: [digits]\nscenarios: [{scenario: random, ratios: [0.1, 0.1]}]\nseeds: [0]\nmethods: all\n",
     "lists 0.1 twice"),
    ("datasets: [digits]\n" + OK_SCEN + "seeds: [0, 0]\nmethods: all\n", "lists 0 twice"),
    ("datasets: [digits]\nscenarios: [{scenario: random, ratios: [0.1], foo: 1}]\nseeds: [0]\nmethods: all\n",
     "unknown key 'foo'"),
    ("datasets: [digits]\n" + OK_SCEN + "seeds: [0]\nmethods: all\nmethod_args: 3\n", "method_args: 3 is not a mapping"),
    ("datasets: [digits]\n" + OK_SCEN + "seeds: [0]\nmethods: all\nimports: foo\n", "imports: foo is not a list"),
    ("datasets: [digits]\nscenarios: [{scenario: [random], ratios: [0.1]}]\nseeds: [0]\nmethods: all\n",
     "scenarios[0].scenario"),
    ("datasets: [[digits]]\n" + OK_SCEN + "seeds: [0]\nmethods: all\n", "nested list"),
    ("datasets: [digits]\n" + OK_SCEN + "seeds: [0]\nmethods: [finetune, finetune]\n", "lists finetune twice"),
    ("datasets: [digits\n", "cannot read sweep file"),
])
def test_bad_sweep_is_one_line(capsys, tmp_path, text, expected):
    err = _run(capsys, tmp_path, _sweep(tmp_path, text))
    assert expected in err


def test_check_run_validates_without_running(tmp_path):
    ok = [f"output_dir={tmp_path}/out", f"cache_dir={tmp_path}/cache", "logger=none"]
    schema.check_run([*ok, "methods=[finetune]", "seeds=[0,1]", "forget.ratios=[0.1,0.3]"])
    schema.check_run([*ok, *_sweep(tmp_path, "datasets: [digits]\n" + OK_SCEN + "seeds: [0]\nmethods: all\n")])
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()
    with pytest.raises(BenchmarkError, match="shard=3/2 is out of range"):
        schema.check_run([*ok, "shard=3/2"])


def test_valid_configs_still_compose(tmp_path):
    base = [f"output_dir={tmp_path}/out", f"cache_dir={tmp_path}/cache", "logger=none"]
    for extra in (["forget.scenario=class", "forget.classes=[3]"], ["forget.scenario=subclass", "forget.classes=[1]"],
                  ["trainer.devices=[0]", "trainer.precision=bf16-mixed"], ["attack.max_steps=null"],
                  ["method_args.finetune.lr=1e-3", "method_defaults.batch_size=32"], ["methods=all"]):
        cfgs = compose_grid([*base, *extra])
        assert len(cfgs) == 1


def test_every_shipped_sweep_and_preset_passes_the_schema(tmp_path):
    base = [f"output_dir={tmp_path}/out", f"cache_dir={tmp_path}/cache", "logger=none"]
    for sweep in ("digits", "cifar10", "cifar10_cpu"):
        assert compose_grid([*base, f"sweep={sweep}"])
    assert compose_grid([*base, "preset=cifar10_cpu"])


def test_classes_of_a_folder_dataset_are_checked_once_loaded_before_training(tmp_path, capsys):
    """imagefolder declares no num_classes: forget.classes is checked right after loading."""
    import numpy as np
    from PIL import Image

    root = tmp_path / "folder"
    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(6):
                Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / split / c / f"{i}.png")
    code = main(["run", "dataset=imagefolder", f"data.root={root}", "model=digits_mlp", "forget.scenario=class",
                 "forget.classes=[5]", "methods=[original]", "logger=none", "trainer.accelerator=cpu",
                 f"output_dir={tmp_path}/out", f"cache_dir={tmp_path}/cache"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "forget.classes" in err and "0..1" in err
    assert not (tmp_path / "cache" / "models").exists()
