"""One source of truth for a result: typed method arguments, the identity of a cell, guards.

Each test reproduces a defect a new user met (a method in an outside package, run through
``imports=``): pooled or stale rows, late config errors, ablations differing in two knobs,
a broken model scored as the best, lost diagnostics.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmark import hparams
from benchmark.cli import main
from benchmark.config import compose
from tests.conftest import tiny_overrides

USER_METHOD = '''
"""A user's method outside the repository: fine-tuning with a logit dampening term."""
import torch
from torch import nn

from benchmark.losses import ce
from benchmark.module import METHODS, Batch, UnlearnData, UnlearnModule


@METHODS.register("logit_dampen")
class LogitDampen(UnlearnModule):
    streams = ("retain",)
    search_space = {{"beta": ("log", 1e-3, 1.0)}}

    def __init__(self, net: nn.Module, data: UnlearnData, *, beta: float = {beta}, **kw) -> None:
        super().__init__(net, data, **kw)
        self.save_hyperparameters(ignore=["net", "data"])

    def unlearn_step(self, batch: dict[str, Batch]) -> dict:
        b = batch["retain"]
        logits = self.net(b.x)
        return {{"loss": ce(logits, b.y) + self.hparams.beta * logits.pow(2).mean(){extra}}}


@METHODS.register("nan_shot")
class NanShot(UnlearnModule):
    """A broken one-shot method: writes NaN into the weights."""

    one_shot = True

    def __init__(self, net: nn.Module, data: UnlearnData) -> None:
        super().__init__(net, data)

    def unlearn_once(self) -> dict:
        with torch.no_grad():
            next(self.net.parameters()).fill_(float("nan"))
        return {{}}


@METHODS.register("class_only")
class ClassOnly(UnlearnModule):
    scenarios = ("class",)

    def unlearn_step(self, batch: dict[str, Batch]) -> dict:
        b = batch["retain"]
        return {{"loss": ce(self.net(b.x), b.y)}}


@METHODS.register("does_nothing")
class DoesNothing(UnlearnModule):
    """Trains with a zero learning rate: leaves every weight as it was."""

    def __init__(self, net: nn.Module, data: UnlearnData, *, lr: float = 0.0, momentum: float = 0.0,
                 weight_decay: float = 0.0, **kw) -> None:
        super().__init__(net, data, lr=lr, momentum=momentum, weight_decay=weight_decay, **kw)

    def unlearn_step(self, batch: dict[str, Batch]) -> dict:
        b = batch["retain"]
        return {{"loss": ce(self.net(b.x), b.y)}}
'''


def write_user_package(root: Path, beta: float = 0.5, extra: str = "") -> str:
    pkg = root / "userlab"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "methods.py").write_text(textwrap.dedent(USER_METHOD.format(beta=beta, extra=extra)))
    return "userlab.methods"


@pytest.fixture
def user_pkg(tmp_path, monkeypatch):
    mod = write_user_package(tmp_path / "src")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    import importlib

    import benchmark.module as bm

    for name in ("logit_dampen", "nan_shot", "class_only", "does_nothing"):
        bm.METHODS._items.pop(name, None)
    sys.modules.pop(mod, None)
    importlib.import_module(mod)
    yield mod
    for name in ("logit_dampen", "nan_shot", "class_only", "does_nothing"):
        bm.METHODS._items.pop(name, None)
    sys.modules.pop(mod, None)


def run_cli(tmp_path, capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["run", *tiny_overrides(tmp_path, "attack.enabled=false", *extra)])
    out, err = capsys.readouterr()
    return code, out, err


def records(tmp_path) -> list[dict]:
    path = tmp_path / "out" / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- typed method configuration
def test_misspelt_hyperparameter_fails_before_any_data_loads(tmp_path, capsys, user_pkg):
    # a dataset with no data: the hyperparameter error must come first, in one line
    code = main(["run", f"imports=[{user_pkg}]", "dataset=cifar10", f"data.root={tmp_path}/nowhere",
                 f"output_dir={tmp_path}/out", f"cache_dir={tmp_path}/cache", "logger=none",
                 "methods=[logit_dampen]", "method_args.logit_dampen.betta=0.1"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "'betta'" in err and "did you mean 'beta'" in err
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.pt"))


def test_misspelt_method_under_method_args_is_an_error(tmp_path, capsys):
    code = main(["run", *tiny_overrides(tmp_path, "methods=[finetune]", "method_args.fintune.lr=0.1")])
    err = capsys.readouterr().err
    assert code == 2 and "unknown method 'fintune'" in err and "did you mean 'finetune'" in err


def test_ablations_inherit_their_base_arguments(tiny_cfg):
    cfg = compose([*tiny_overrides(Path(str(tiny_cfg.output_dir)).parent, "method_args.ieu.alpha=0.1")])
    base = hparams.resolve("ieu", cfg)
    for name, knob, value in (("ieu_no_decay", "weight_decay", 0.0), ("ieu_no_noise", "sigma", 0.0),
                              ("ieu_no_ascent", "alpha", 0.0)):
        hp = hparams.resolve(name, cfg)
        assert hp[knob] == value
        diff = {k for k in hp if hp[k] != base[k]}
        assert diff == {knob}, f"{name} differs from ieu in {diff}, not only {knob}"
    assert hparams.resolve("ieu_no_decay", cfg)["alpha"] == 0.1


def test_defaults_live_in_the_signature():
    from benchmark.module import METHODS

    for name in METHODS.names():
        cls = METHODS.get(name)
        hparams.validate_search_space(name, cls)  # every search_space names real arguments
    assert hparams.resolve("scrub")["epochs"] == 3 and hparams.resolve("scrub")["lr"] == 5e-4
    assert hparams.resolve("grad_ascent")["epochs"] == 5
    assert hparams.resolve("original") == {}


def test_a_bad_search_space_is_refused(user_pkg):
    from benchmark.errors import BenchmarkError
    from benchmark.module import METHODS

    cls = METHODS.get("logit_dampen")
    cls.search_space = {"betaa": ("log", 1e-3, 1.0)}
    try:
        with pytest.raises(BenchmarkError, match="did you mean 'beta'"):
            hparams.validate_search_space("logit_dampen", cls)
    finally:
        cls.search_space = {"beta": ("log", 1e-3, 1.0)}


# ---------------------------------------------------------------- identity and rows
@pytest.mark.slow
def test_variants_and_models_stay_separate_rows(tmp_path, capsys, user_pkg):
    base = [f"imports=[{user_pkg}]", "methods=[logit_dampen]", "seeds=[0]"]
    assert run_cli(tmp_path, capsys, *base)[0] == 0
    assert run_cli(tmp_path, capsys, *base, "method_args.logit_dampen.beta=0.1")[0] == 0
    assert run_cli(tmp_path, capsys, *base, "model=digits_cnn")[0] == 0
    recs = [r for r in records(tmp_path) if r["method"] == "logit_dampen"]
    assert len(recs) == 3 and len({r["row_key"] for r in recs}) == 3
    assert {r["variant"] for r in recs} == {"", "beta=0.1"}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    rows = [g for g in summary["rows"] if g["method"] == "logit_dampen"]
    assert len(rows) == 3 and all(g["n"] == 1 for g in rows)


@pytest.mark.slow
def test_changing_a_default_in_code_reruns_the_cell(tmp_path):
    """The code fingerprint is in the cell's identity: a stale record is rerun, not reused."""
    src = tmp_path / "src"
    mod = write_user_package(src, beta=0.5)
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{Path.cwd()}", "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "benchmark", "run", f"imports=[{mod}]", "methods=[logit_dampen]",
           *tiny_overrides(tmp_path, "attack.enabled=false")]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert "1 done already" in again.stdout
    # the same configuration, other code: the old record is stale and the cell reruns
    write_user_package(src, beta=0.5, extra=" + 0.0 * logits.sum()")
    changed = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert changed.returncode == 0, changed.stderr
    assert "0 done already, 1 stale" in changed.stdout
    recs = records(tmp_path)
    assert len(recs) == 2 and recs[0]["config_id"] == recs[1]["config_id"]
    assert recs[0]["cell_id"] != recs[1]["cell_id"]
    assert "stale" in (tmp_path / "out" / "summary.json").read_text()
    # a default changed in code: another configuration, run anew
    write_user_package(src, beta=0.25, extra=" + 0.0 * logits.sum()")
    default = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert "0 done already" in default.stdout
    recs = records(tmp_path)
    assert len(recs) == 3 and sorted(r["hparams"]["beta"] for r in recs) == [0.25, 0.5, 0.5]


# ---------------------------------------------------------------- guards and diagnostics
@pytest.mark.slow
def test_guards_nan_is_failed_and_unsupported_scenario_is_skipped(tmp_path, capsys, user_pkg):
    code, out, _ = run_cli(tmp_path, capsys, f"imports=[{user_pkg}]", "methods=[nan_shot,class_only]")
    assert code == 1  # a failed cell
    recs = {r["method"]: r for r in records(tmp_path)}
    assert recs["nan_shot"]["status"] == "failed" and "non-finite" in recs["nan_shot"]["error"]
    assert recs["nan_shot"]["metrics"] == {}
    assert recs["class_only"]["status"] == "skipped" and "class" in recs["class_only"]["error"]
    assert "SKIPPED" in out and "FAILED" in out


@pytest.mark.slow
def test_ieu_diagnostics_reach_the_local_file_and_wandb(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    code = main(["run", *[o for o in tiny_overrides(tmp_path, "attack.enabled=false", "methods=[ieu]",
                                                     "method_args.ieu.epochs=2", "trainer.log_every_n_steps=1")
                          if o != "logger=none"], "logger.name=wandb"])
    assert code == 0
    rec = records(tmp_path)[0]
    path = tmp_path / "out" / "diagnostics" / f"{rec['cell_id']}.csv"
    rows = list(csv.DictReader(path.open()))
    assert rows and "unlearn/weight_norm" in rows[0] and float(rows[0]["unlearn/weight_norm"]) > 0
    # the same values in the cell's offline W&B run (its history records name the key)
    runs = [f for f in (tmp_path / "out").rglob("run-*.wandb")]
    assert runs and any(b"unlearn/weight_norm" in f.read_bytes() for f in runs)


def test_list_metrics_names_every_relearn_key_with_its_direction(capsys):
    assert main(["list", "metrics"]) == 0
    out = capsys.readouterr().out
    for key in ("rcd", "steps", "censored", "oracle_steps", "recovery_gap", "weight_dist_at_T"):
        line = next(ln for ln in out.splitlines() if ln.startswith(f"relearn/{{attacker}}/{key} "))
        assert line.split()[1] in ("higher", "lower", "oracle", "info")
    assert any(ln.startswith("gap/avg ") for ln in out.splitlines())


# ---------------------------------------------------------------- outside packages
def test_check_passes_for_an_outside_method_and_fails_for_a_no_op(tmp_path, capsys, user_pkg):
    assert main(["check", "logit_dampen", f"imports=[{user_pkg}]"]) == 0
    assert "0 failed" in capsys.readouterr().out
    assert main(["check", "does_nothing", f"imports=[{user_pkg}]"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  changes the weights" in out and "unlearns nothing" in out


@pytest.mark.slow
def test_a_sweep_file_outside_the_repo_carries_imports_and_method_args(tmp_path, capsys, user_pkg):
    sweep = tmp_path / "my_sweep.yaml"
    sweep.write_text(textwrap.dedent(f"""
        imports: [{user_pkg}]
        method_args: {{logit_dampen: {{beta: 0.2}}}}
        datasets: [digits]
        scenarios: [{{scenario: random, ratios: [0.1]}}]
        seeds: [0]
        methods: [logit_dampen]
    """))
    code, _, err = run_cli(tmp_path, capsys, f"sweep={sweep}")
    assert code == 0, err
    (rec,) = records(tmp_path)
    assert rec["hparams"]["beta"] == 0.2 and rec["variant"] == "beta=0.2"


def test_everything_that_changes_a_number_changes_the_cell_id(tmp_path):
    """attack.*, eval.*, the trainer settings that change weights and the CONTENTS of an indices
    file are in the identity: a finished directory never answers "done already" for them."""
    import numpy as np

    from benchmark.stages.plan import make_plan

    idx = tmp_path / "forget.npy"
    np.save(idx, np.arange(0, 60, 3))
    base = ["methods=[finetune]", "forget.scenario=indices", f"forget.indices_file={idx}"]

    def config_id(*extra: str) -> str:
        (cell,) = make_plan(compose(tiny_overrides(tmp_path, *base, *extra)), {}).cells
        return cell.keys["config_id"]

    first = config_id()
    assert config_id() == first  # deterministic
    changed = {o: config_id(o) for o in ("attack.epochs=3", "attack.delta=0.1", "attack.attacker_args.sgd.lr=0.05",
                                          "eval.batch_size=256", "eval.mia_shadow_max=100",
                                          "trainer.precision=bf16-mixed", "trainer.devices=2")}
    assert all(v != first for v in changed.values()), changed
    np.save(idx, np.arange(1, 61, 3))  # the same path, other contents
    assert config_id() != first
    # where things live is not identity
    assert config_id(f"output_dir={tmp_path}/elsewhere") == config_id()
