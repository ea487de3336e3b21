"""``python -m benchmark tune``: equal budgets in Optuna studies, resumable, shared, and the tuned file.

Tiny budgets throughout: the 300-image digits config of ``conftest.tiny_overrides``, one
held-out forget draw, two or three trials of fast methods (finetune, ssd).
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import re
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from benchmark import hparams
from benchmark import tune as tune_module
from benchmark.cli import main
from benchmark.config import compose
from benchmark.identity import code_fingerprint
from benchmark.metrics import SplitOutputs
from benchmark.module import METHODS
from benchmark.results import load_table, read_records
from benchmark.stages.references import prepare_group
from benchmark.tune import tuning_values
from tests.conftest import tiny_overrides

SETTING = "ratio=0.1"


def _tune_args(base: Path, *extra: str, out: str = "out") -> list[str]:
    args = tiny_overrides(base, "tune.forget_seeds=[1000]", "tune.methods=[finetune,ssd]",
                          f"tune.file={base}/tuned.yaml", *extra)
    return [a.replace(f"{base}/out", f"{base}/{out}") for a in args]


def _trials(base: Path, out: str = "out") -> list[dict]:
    return [json.loads(line) for line in (base / out / "tune" / "trials.jsonl").read_text().splitlines()]


def _ran_here(text: str, method: str) -> int:
    return int(re.search(rf"\[tune\] {method} {SETTING}: .*?; (\d+) run here\)", text).group(1))


@pytest.fixture(scope="module")
def tuned_once(tmp_path_factory):
    """One tune of finetune and ssd with a budget of 2: (folder, its printed output)."""
    base = tmp_path_factory.mktemp("tune")
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["tune", *_tune_args(base, "tune.trials=2")])
    assert code == 0, out.getvalue()
    return base, out.getvalue()


def test_tune_writes_the_tuned_file_with_provenance_and_every_trial(tuned_once):
    base, text = tuned_once
    data = yaml.safe_load((base / "tuned.yaml").read_text())
    assert (data["dataset"], data["model"], data["scenario"]) == ("digits", "digits_mlp", "random")
    trials = _trials(base)
    assert len(trials) == 4 and {t["state"] for t in trials} == {"COMPLETE"}
    for m in ("finetune", "ssd"):
        e = data["settings"][SETTING][m]
        space = hparams.search_space(m)
        assert set(e["params"]) == set(space)
        assert e["search_space"] == {k: list(v) for k, v in space.items()}
        assert (e["budget"], e["complete"], e["failed"], e["objective"]) == (2, 2, 0, "avg_gap")
        assert (e["sampler"], e["sampler_seed"], e["forget_seeds"]) == ("TPESampler", 0, [1000])
        assert e["code_fingerprint"] == code_fingerprint(METHODS.get(m))["fingerprint"]
        assert e["date"] and e["study"].startswith(f"digits-digits_mlp-random-{SETTING}-{m}-avg_gap-")
        mine = [t for t in trials if t["study"] == e["study"]]
        assert sorted(t["number"] for t in mine) == [0, 1]
        # the best is the lowest Avg Gap; trial 0 is the declared defaults (digits: batch_size 16 fixed)
        assert e["value"] == min(t["value"] for t in mine)
        assert e["params"] == next(t for t in mine if t["value"] == e["value"])["params"]
        first = next(t for t in mine if t["number"] == 0)
        assert first["user_attrs"]["defaults"] is True and e["defaults_value"] == first["value"]
        assert e["fixed"]["batch_size"] == 16
        assert all(np.isfinite(t["user_attrs"]["draws"]["1000"]["avg_gap"]) for t in mine)
    assert next(t for t in trials if t["method"] == "finetune" and t["number"] == 0)["params"] == \
        {"lr": 0.01, "epochs": 10}
    assert _ran_here(text, "finetune") == 2


def test_a_rerun_with_a_larger_budget_runs_only_the_remainder(tuned_once, capsys):
    base, _ = tuned_once
    assert main(["tune", *_tune_args(base, "tune.trials=3", "tune.methods=[ssd]")]) == 0
    text = capsys.readouterr().out
    assert _ran_here(text, "ssd") == 1
    ssd = [t for t in _trials(base) if t["method"] == "ssd"]
    assert sorted(t["number"] for t in ssd) == [0, 1, 2] and {t["state"] for t in ssd} == {"COMPLETE"}
    entry = yaml.safe_load((base / "tuned.yaml").read_text())["settings"][SETTING]
    assert entry["ssd"]["complete"] == 3 and entry["finetune"]["complete"] == 2  # merged, not overwritten
    # the same budget again: nothing to run
    assert main(["tune", *_tune_args(base, "tune.trials=3", "tune.methods=[ssd]")]) == 0
    assert _ran_here(capsys.readouterr().out, "ssd") == 0


def _complete_in(db: Path) -> int:
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    return sum(t.state.name == "COMPLETE" for s in storage.get_all_studies()
               for t in optuna.load_study(study_name=s.study_name, storage=storage).trials)


def _tune_in_child(args: list[str], log: str) -> None:
    import contextlib

    with open(log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        code = main(["tune", *args])
    sys.exit(code)


def test_two_processes_share_one_sqlite_study_without_losing_a_trial(tuned_once):
    base, _ = tuned_once  # its cache holds the held-out draw's references
    args = _tune_args(base, "tune.trials=4", "tune.methods=[finetune]", f"tune.file={base}/shared.yaml",
                      out="shared")
    # forked, so that neither pays the imports again; each opens the study on its own connection
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_tune_in_child, args=(args, str(base / f"worker{i}.log"))) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    outs = [(base / f"worker{i}.log").read_text() for i in range(2)]
    assert [p.exitcode for p in procs] == [0, 0], outs
    trials = _trials(base, "shared")
    ran = [_ran_here(o, "finetune") for o in outs]
    # one shared budget: at most one extra trial per concurrent worker; every trial run is in the study
    assert sum(ran) == len(trials) and 4 <= len(trials) <= 5, (ran, outs)
    assert {t["state"] for t in trials} == {"COMPLETE"}
    assert sorted(t["number"] for t in trials) == list(range(len(trials)))
    assert len({t["study"] for t in trials}) == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_tune_resumes_its_study(tuned_once, monkeypatch, capsys, sig):
    base, _ = tuned_once
    monkeypatch.setattr(tune_module, "HEARTBEAT_S", 1)  # a SIGKILLed trial is stale after 2 s, not 60
    monkeypatch.setattr(tune_module, "GRACE_S", 2)
    out = f"killed-{sig.name}"
    args = _tune_args(base, "tune.trials=3", "tune.methods=[finetune]", f"tune.file={base}/{out}.yaml", out=out)
    log = base / f"{out}.log"
    child = multiprocessing.get_context("fork").Process(target=_tune_in_child, args=(args, str(log)))
    child.start()
    deadline = time.monotonic() + 60
    while "finetune trial 0:" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(child.pid, sig)  # during trial 1
    child.join(timeout=60)
    assert child.exitcode == (143 if sig == signal.SIGTERM else -9), log.read_text()
    if sig == signal.SIGTERM:
        assert "interrupted by SIGTERM" in log.read_text() and "rerun the same command to resume" in log.read_text()
    before = _complete_in(base / out / "tune.db")  # what the killed process had finished
    assert main(["tune", *args]) == 0
    text = capsys.readouterr().out
    trials = _trials(base, out)
    done = [t for t in trials if t["state"] == "COMPLETE"]
    cut = [t for t in trials if t["state"] != "COMPLETE"]
    assert len(done) == 3 and _ran_here(text, "finetune") == 3 - before
    # the cut trial is FAIL without a reason (not counted against the budget) and was rerun
    assert len(cut) <= 1 and all(t["state"] == "FAIL" and "fail_reason" not in t["user_attrs"] for t in cut)


def test_a_trial_abandoned_before_its_first_heartbeat_is_failed_and_rerun(tmp_path, monkeypatch, capsys):
    import optuna

    monkeypatch.setattr(tune_module, "GRACE_S", 1)
    args = _tune_args(tmp_path, "tune.trials=1", "tune.methods=[ssd]")
    assert main(["tune", *args]) == 0
    (name,) = {t["study"] for t in _trials(tmp_path)}
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/out/tune.db")
    study.ask()  # what a worker SIGKILLed between creating a trial and its first heartbeat leaves: RUNNING
    capsys.readouterr()
    assert main(["tune", *[a.replace("tune.trials=1", "tune.trials=2") for a in args]]) == 0
    assert _ran_here(capsys.readouterr().out, "ssd") == 1
    states = sorted(t["state"] for t in _trials(tmp_path))
    assert states == ["COMPLETE", "COMPLETE", "FAIL"]


def test_run_tuned_uses_the_tuned_values_and_says_so(tuned_once, capsys):
    base, _ = tuned_once
    tuned = yaml.safe_load((base / "tuned.yaml").read_text())["settings"][SETTING]
    out = base / "run"
    args = [*tiny_overrides(base, "methods=[finetune,ssd]", f"tuned={base}/tuned.yaml", "attack.enabled=false",
                            "method_args.ssd.lam=0.5")]
    args = [a.replace(f"{base}/out", str(out)) for a in args]
    assert main(["run", *args]) == 0
    recs = {r["method"]: r for r in read_records(out).records}
    ft, ssd = recs["finetune"], recs["ssd"]
    assert {k: ft["hparams"][k] for k in tuned["finetune"]["params"]} == tuned["finetune"]["params"]
    assert ssd["hparams"]["alpha"] == tuned["ssd"]["params"]["alpha"] and ssd["hparams"]["lam"] == 0.5  # args win
    for r in (ft, ssd):
        assert r["hparams_source"] == "tuned" and r["tuned"]["file"] == f"{base}/tuned.yaml"
        assert r["tuned"]["setting"] == SETTING and r["identity"]["hparams_source"] == "tuned"
    labels = set(load_table(out)["label"])
    assert labels == {"finetune [tuned]", "ssd{lam=0.5} [tuned]"}
    # the same method at its defaults is another row of the same table, never pooled with the tuned one
    assert main(["run", *[a for a in args if not a.startswith(("tuned=", "method_args"))]]) == 0
    df = load_table(out)
    ft_rows = df[df["method"] == "finetune"]
    assert set(ft_rows["label"]) == {"finetune", "finetune [tuned]"} and ft_rows["row_key"].nunique() == 2
    assert df["table_key"].nunique() == 1
    capsys.readouterr()
    # a tunable method missing from the file: one line naming make tune
    assert main(["run", *[a.replace("methods=[finetune,ssd]", "methods=[grad_ascent]") for a in args]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no grad_ascent for ratio=0.1" in err and "make tune DATASET=digits" in err


def test_tuning_never_reads_the_test_set(tuned_once, digits):
    base, _ = tuned_once
    cfg = compose(tiny_overrides(base, "attack.enabled=false", "seeds=[1000]"))
    g = prepare_group(cfg, digits, 0.1, 1000, torch.device("cpu"))
    full = dict(g.original_outputs)
    oracle, _ = tuning_values(digits, cfg, g, g.oracle_outputs)
    before, _ = tuning_values(digits, cfg, g, full, oracle)
    rng = np.random.default_rng(0)
    t = full["test"]
    full["test"] = SplitOutputs(logits=rng.normal(size=t.logits.shape).astype(np.float32),
                                labels=rng.integers(0, 10, t.labels.shape), loss=rng.random(t.loss.shape, np.float32))
    after, _ = tuning_values(digits, cfg, g, full, oracle)
    assert before == after and before["eval/ta"] == before["eval/val/acc"]


def test_oracle_free_objective_maximises_ua_within_the_val_tolerance(tmp_path, capsys):
    args = _tune_args(tmp_path, "tune.trials=2", "tune.methods=[ssd]", "tune.objective=oracle_free",
                      "tune.val_tolerance=5")
    assert main(["tune", *args]) == 0
    e = yaml.safe_load((tmp_path / "tuned.yaml").read_text())["settings"][SETTING]["ssd"]
    assert (e["objective"], e["direction"], e["val_tolerance"]) == ("oracle_free", "maximize", 5.0)
    trials = _trials(tmp_path)
    feasible = [t for t in trials if t["user_attrs"]["feasible"]]
    assert e["value"] == max(t["value"] for t in feasible)
    for t in trials:
        drop = t["user_attrs"]["draws"]["1000"]["val_drop"]
        assert t["user_attrs"]["feasible"] == (drop <= 5.0)
        assert t["value"] == pytest.approx(t["user_attrs"]["draws"]["1000"]["ua"])


def test_select_on_front_takes_the_highest_rcd_within_the_gap_tolerance():
    from benchmark.tune import select_on_front

    pts = [(0, (5.0, 1.0)), (1, (4.0, 0.5)), (2, (4.5, 2.0)), (3, (6.0, 2.0)), (4, (9.0, 3.0)), (5, (4.5, 2.0))]
    # 0 is dominated by 2; 3 is dominated by 2 (same RCD, higher gap); 2 and 5 tie: both on the front
    assert select_on_front(pts, 0.0) == (1, [1, 2, 5, 4])
    assert select_on_front(pts, 1.0) == (2, [1, 2, 5, 4])  # the lower number among equal points
    assert select_on_front(pts, 5.0) == (4, [1, 2, 5, 4])


def test_two_objective_tuning_keeps_the_pareto_front_and_the_report_draws_it(tmp_path, capsys):
    from benchmark.leaderboard import tuning_section
    from benchmark.results.trials import read_trials
    from benchmark.tune import select_on_front

    args = _tune_args(tmp_path, "tune.trials=4", "tune.methods=[ssd]", "tune.objective=avg_gap_rcd",
                      "tune.gap_tolerance=3")
    assert main(["tune", *args]) == 0
    printed = capsys.readouterr().out
    e = yaml.safe_load((tmp_path / "tuned.yaml").read_text())["settings"][SETTING]["ssd"]
    assert (e["objective"], e["direction"], e["gap_tolerance"]) == ("avg_gap_rcd", ["minimize", "maximize"], 3.0)
    trials = [t for t in _trials(tmp_path) if t["state"] == "COMPLETE"]
    assert len(trials) == 4 and all(t["directions"] == ["minimize", "maximize"] for t in trials)
    for t in trials:  # each value is the mean over the draws of Avg Gap and of the attackers' mean RCD
        d = t["user_attrs"]["draws"]["1000"]
        assert t["values"] == pytest.approx([d["avg_gap"], d["rcd"]]) and t["value"] == t["values"][0]
    pts = [(t["number"], t["values"]) for t in trials]
    dominated = {n for n, (g, r) in pts for _, (g2, r2) in pts if g2 <= g and r2 >= r and (g2 < g or r2 > r)}
    front = [p["trial"] for p in e["pareto"]]
    assert set(front) == {n for n, _ in pts} - dominated
    low = min(g for n, (g, _) in pts if n in front)
    assert e["values"][1] == max(r for n, (g, r) in pts if n in front and g <= low + 3.0)
    assert e["best_trial"] == select_on_front(pts, 3.0)[0] and e["value"] == e["values"][0]
    assert f"(of {len(front)} on the Pareto front) (trial {e['best_trial']}:" in printed
    (st,) = read_trials(tmp_path / "out")  # the report makes the same choice from the export alone
    assert st.multi and st.best()["number"] == e["best_trial"] and [t["number"] for t in st.front()] == front
    sec = tuning_section(tmp_path / "out")
    (row,) = sec["table"]["rows"]
    assert row[3] == f"{e['values'][0]:.3f} / {e['values'][1]:.2f} (trial {e['best_trial']}; front of {len(front)})"
    (fig,) = sec["figures"]
    assert "Pareto front" in fig["caption"] and (tmp_path / "out" / fig["rel"]).read_bytes()[:4] == b"\x89PNG"
    # the tuned file's selected values run like any other
    assert main(["run", *tiny_overrides(tmp_path, "methods=[ssd]", "seeds=[0]", f"tuned={tmp_path}/tuned.yaml",
                                         "attack.enabled=false")]) == 0
    (rec,) = [r for r in read_records(tmp_path / "out").records if r.get("method") == "ssd"]
    assert {k: rec["hparams"][k] for k in e["params"]} == pytest.approx(e["params"])


def test_a_draw_without_a_headline_rcd_is_left_out_of_the_rcd_objective(tmp_path, capsys, monkeypatch):
    """An oracle that forgets nothing measurable on a draw makes RCD undefined there for every
    trial: RCD averages the other draws (said in one line); with none left, tune stops in one line."""
    undefined = {1001}
    real = tune_module.Tuner._reference_values

    def values(self, g):
        out = real(self, g)
        if g.seed in undefined:
            out["rcd_undefined"] = "no measurable forget-accuracy gap (test)"
        return out

    monkeypatch.setattr(tune_module.Tuner, "_reference_values", values)
    args = _tune_args(tmp_path, "tune.trials=2", "tune.methods=[ssd]", "tune.objective=avg_gap_rcd",
                      "tune.forget_seeds=[1000,1001]")
    assert main(["tune", *args]) == 0
    assert f"[tune] {SETTING} forget seed 1001: headline RCD undefined (no measurable forget-accuracy gap (test)); " \
           "the RCD objective averages the other draws" in capsys.readouterr().out
    e = yaml.safe_load((tmp_path / "tuned.yaml").read_text())["settings"][SETTING]["ssd"]
    assert e["rcd_forget_seeds"] == [1000]
    for t in _trials(tmp_path):
        d = t["user_attrs"]["draws"]
        assert d["1001"]["rcd"] is None and t["values"][1] == pytest.approx(d["1000"]["rcd"])
        assert t["values"][0] == pytest.approx((d["1000"]["avg_gap"] + d["1001"]["avg_gap"]) / 2)
    undefined.add(1000)
    assert main(["tune", *_tune_args(tmp_path, "tune.trials=2", "tune.methods=[ssd]", "tune.objective=avg_gap_rcd",
                                     "tune.forget_seeds=[1000,1001]", out="out2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the headline RCD is undefined on every held-out draw" in err and \
        "tune.objective=avg_gap" in err, err


@pytest.mark.parametrize("extra, expected", [
    (["tune.trials=0"], "tune.trials=0 is outside [1, 100000]; use e.g. tune.trials=20"),
    (["tune.objective=avg_gap_rcd", "attack.enabled=false"], "tune.objective=avg_gap_rcd reads RCD, but "
     "attack.enabled=false"),
    (["seeds=[0,1000]"], "tune.forget_seeds=[1000] overlaps seeds=[0, 1000] (the reported draws)"),
    (["tune.objective=avg_gapp"], "tune.objective=avg_gapp is not one of avg_gap|oracle_free"),
    (["forget.seed=3"], "forget.seed=3 fixes D_f for every seed"),
    (["tune.methods=[original]"], "names original, which has no search_space"),
    (["tune.storage=notaurl"], "tune.storage=notaurl is not a database URL"),
])
def test_bad_tune_inputs_are_one_line_before_any_work(tmp_path, capsys, extra, expected):
    assert main(["tune", *_tune_args(tmp_path, *extra)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "out" / "tune.db").exists() and not (tmp_path / "tuned.yaml").exists()


def test_a_variant_is_not_tuned_but_runs_with_its_bases_tuned_values_less_its_knobs(tmp_path, capsys):
    from benchmark import tuned as tuned_mod
    from benchmark.stages.plan import make_plan

    assert not tuned_mod.tunable("ieu_no_decay") and tuned_mod.tunable("ieu")
    assert hparams.variant_of("ieu_no_decay") == ("ieu", {"weight_decay"}) and hparams.variant_of("ieu") is None
    assert hparams.search_space("original") == {} and hparams.search_space("retrain") == {}
    cfg = compose(tiny_overrides(tmp_path, "tuned=true", "methods=[ieu,ieu_no_ascent,ieu_no_decay,ieu_no_noise]"))
    cells = {c.method: c for c in make_plan(cfg, {}).cells}
    base = cells["ieu"].hparams
    for m, knob, value in (("ieu_no_ascent", "alpha", 0.0), ("ieu_no_decay", "weight_decay", 0.0),
                           ("ieu_no_noise", "sigma", 0.0)):
        c = cells[m]
        assert c.hparams_source == "tuned" and c.tuned["base"] == "ieu" and c.variant == ""
        # the tuned ablation differs from the tuned IEU in exactly its one knob
        assert {k for k in base if base[k] != c.hparams[k]} == {knob} and c.hparams[knob] == value
    capsys.readouterr()
    assert main(["tune", *tiny_overrides(tmp_path, "tune.methods=[ieu_no_decay]")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a variant of ieu" in err and "tune ieu instead" in err


def test_missing_tuned_file_is_one_line_naming_make_tune(tmp_path, capsys):
    args = tiny_overrides(tmp_path, "methods=[finetune]", "tuned=true", "dataset=digits", "model=digits_cnn")
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no tuned file configs/tuned/digits-digits_cnn-random.yaml" in err
    assert "make tune DATASET=digits" in err



@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parent.parent / "configs" / "tuned").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_every_shipped_tuned_file_matches_the_current_search_spaces(path):
    from benchmark.tuned import read

    data = read(path)
    assert path.stem == f"{data['dataset']}-{data['model']}-{data['scenario']}"
    for setting, methods in data["settings"].items():
        for m, e in methods.items():
            space = hparams.search_space(m)
            assert e["search_space"] == {k: list(v) for k, v in space.items()}, f"{path.name} {setting} {m}: retune"
            assert set(e["params"]) == set(space)
            for k, v in e["params"].items():
                if space[k][0] == "categorical":
                    assert v in space[k][1]
                else:
                    assert space[k][1] <= v <= space[k][2]
            assert {"objective", "value", "budget", "sampler", "sampler_seed", "forget_seeds", "date",
                    "code_fingerprint", "study"} <= set(e)


def test_the_report_shows_each_study_with_its_history_and_importances(tuned_once):
    from benchmark.leaderboard import tuning_section
    from benchmark.results.trials import read_trials

    base, _ = tuned_once
    studies = {s.method: s for s in read_trials(base / "out")}
    assert set(studies) == {"finetune", "ssd"}
    tuned = yaml.safe_load((base / "tuned.yaml").read_text())["settings"][SETTING]
    for m, st in studies.items():
        best = st.best()  # the report's choice is the tuned file's
        assert (best["number"], best["params"]) == (tuned[m]["best_trial"], tuned[m]["params"])
        assert st.defaults()["number"] == 0 and all(t["distributions"] for t in st.complete())
        imp = st.importances()
        assert imp is not None and set(imp) == set(tuned[m]["params"]) and sum(imp.values()) == pytest.approx(1.0)
    sec = tuning_section(base / "out")
    rows = {r[1]: r for r in sec["table"]["rows"]}
    assert set(rows) == {"finetune", "ssd"} and rows["finetune"][5] == "2/0"
    assert rows["finetune"][3].startswith(f"{tuned['finetune']['value']:.3f} (trial {tuned['finetune']['best_trial']})")
    for f in sec["figures"]:
        assert (base / "out" / f["rel"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(sec["figures"]) == 2


def test_tuned_auto_uses_a_covering_file_and_otherwise_runs_defaults_saying_why(tmp_path, capsys):
    from benchmark.stages.plan import make_plan

    def plan(*extra: str):
        cfg = compose(tiny_overrides(tmp_path, "tuned=auto", *extra))
        return {c.method: c for c in make_plan(cfg, {}).cells}

    shipped = yaml.safe_load((Path(__file__).parents[1] / "configs/tuned/digits-digits_mlp-random.yaml").read_text())
    cells = plan("methods=[finetune,grad_ascent]")  # the shipped digits file covers both
    assert {c.hparams_source for c in cells.values()} == {"tuned"}
    ft = shipped["settings"][SETTING]["finetune"]["params"]
    assert {k: cells["finetune"].hparams[k] for k in ft} == ft
    assert capsys.readouterr().out == ""
    # a file on config_path that lacks a method: every method at its defaults (never a mixed table), one line
    own = tmp_path / "own" / "tuned"
    own.mkdir(parents=True)
    data = copy.deepcopy(shipped)
    del data["settings"][SETTING]["grad_ascent"]
    (own / "digits-digits_mlp-random.yaml").write_text(yaml.safe_dump(data))
    cells = plan("methods=[finetune,grad_ascent]", f"config_path=[{own.parent}]")
    assert {c.hparams_source for c in cells.values()} == {"defaults"}
    out = capsys.readouterr().out
    assert out.count("tuned=auto: every method runs at its defaults, because") == 1 and "has no grad_ascent" in out
    # no file for the scenario at all
    cells = plan("methods=[finetune]", "forget.scenario=class", "forget.ratios=[0.1]")
    assert cells["finetune"].hparams_source == "defaults"
    assert "tuned=auto: no tuned file tuned/digits-digits_mlp-class.yaml" in capsys.readouterr().out


def test_tuned_values_replace_the_datasets_declared_overrides_but_not_the_users():
    # digits declares method_args.grad_ascent.lr=0.02 (configs/dataset/digits.yaml); tuning searched lr,
    # so the tuned lr must be what runs; an lr the user passes still wins
    tuned = {"lr": 0.0073, "epochs": 10}
    cfg = compose(["dataset=digits"])
    assert hparams.resolve("grad_ascent", cfg)["lr"] == 0.02
    assert {k: hparams.resolve("grad_ascent", cfg, tuned=tuned)[k] for k in tuned} == tuned
    assert hparams.variant_label(hparams.resolve("grad_ascent", cfg, tuned=tuned),
                                 hparams.declared("grad_ascent", cfg, tuned=tuned)) == ""
    mine = compose(["dataset=digits", "method_args.grad_ascent.lr=0.001"])
    hp = hparams.resolve("grad_ascent", mine, tuned=tuned)
    assert (hp["lr"], hp["epochs"]) == (0.001, 10)
    assert hparams.variant_label(hp, hparams.declared("grad_ascent", mine, tuned=tuned)) == "lr=0.001"
