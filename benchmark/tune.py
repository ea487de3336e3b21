"""``python -m benchmark tune``: the same search budget for every method, in Optuna studies.

For each forget setting (dataset, model, scenario, ratio) and each method, one Optuna
study over the method's ``search_space`` (:func:`benchmark.hparams.search_space`, checked
against its signature), held in Optuna's RDB storage (``tune.storage``; SQLite in the
output directory by default). Trials run on *held-out* forget draws
(``tune.forget_seeds``, disjoint from the reported ``seeds``), with the attack off, through
the same stages as a run (:func:`~benchmark.stages.references.prepare_group`, with its
reference cache, and :func:`~benchmark.stages.cell.run_cell`), and are scored by the
registered metrics with D_val standing in for D_test, so tuning never reads D_test:

- ``avg_gap`` (minimise): the mean over the draws of ``gap/avg`` to that draw's oracle,
  TA being D_val accuracy and MIA-efficacy's non-members D_val;
- ``oracle_free`` (maximise): the mean UA over the draws, subject to the mean D_val accuracy
  lying within ``tune.val_tolerance`` points of the originals' (Optuna's constrained TPE);
- ``avg_gap_rcd`` (two objectives): the mean Avg Gap (minimised) and the mean headline RCD over
  the attackers (maximised, the paper's reading), with the attack on; Optuna's multi-objective
  TPE keeps the Pareto front, and the tuned value is the front's trial with the highest RCD among
  those within ``tune.gap_tolerance`` points of the front's lowest Avg Gap.

A study's name is a hash of everything that changes its trials' numbers except the
budget, so a rerun (after a kill, or with a larger ``tune.trials``) loads it and runs only
the remainder, and many processes on one database URL share one study (Optuna's own
distributed mode). ``tune.trials`` counts finished trials: COMPLETE ones and those the
method failed (recorded FAIL, with the reason in the trial's user attributes); a trial
cut by an interruption is FAIL without a reason and is rerun. Trial 0 of every study is
the method's declared defaults (where they lie inside the search space).

Artefacts: the best trial's values per method in ``configs/tuned/<dataset>-<model>-<scenario>.yaml``
(:mod:`benchmark.tuned`, with provenance) and every trial in ``<output_dir>/tune/trials.jsonl``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from omegaconf import OmegaConf

from benchmark import hparams, tuned
from benchmark.config import compose_grid, to_dict
from benchmark.data import load_dataset
from benchmark.errors import BenchmarkError
from benchmark.identity import code_fingerprint, digest
from benchmark.io import (
    Interrupted,
    atomic_write_text,
    received_signal,
    signals_held,
    signals_released,
)
from benchmark.metrics import compute_metrics
from benchmark.module import METHODS
from benchmark.results import check_writable, git_revision
from benchmark.schema import fail
from benchmark.stages.cell import run_cell
from benchmark.stages.plan import Cell, cell_identity, check_plan
from benchmark.stages.references import Group, metric_context, prepare_group
from benchmark.training import eval_device
from benchmark.version import PROTOCOL_VERSION

OBJECTIVES = {"avg_gap": "minimize", "oracle_free": "maximize", "avg_gap_rcd": ("minimize", "maximize")}
TUNE_KEYS = ["eval/ua", "eval/ra", "eval/ta", "eval/mia/efficacy", "eval/val/acc"]
HEARTBEAT_S, GRACE_S = 10, 60  # a trial whose process died is failed after GRACE_S without a heartbeat
WAIT_S = 2.0  # polling while the last trials of a shared budget run in other processes
STALL_S = 1800  # stop waiting for in-flight trials when nothing changed for this long


@dataclass
class StudyReport:
    """What one method's study holds after this process's part of it."""

    method: str
    setting: str
    study: str
    budget: int
    complete: int = 0
    failed: int = 0
    ran_here: int = 0
    wall_s: float = 0.0
    trial_s: float = 0.0
    best: Any = None  # the best FrozenTrial, or None
    entry: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def _optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


# -- configuration ---------------------------------------------------------------------------

def trial_config(cfg: Any) -> Any:
    """The run configuration a trial runs under: the held-out draws as seeds, no population,
    untuned defaults, and the attack only where the objective reads RCD (``avg_gap_rcd``)."""
    t = copy.deepcopy(cfg)
    OmegaConf.set_struct(t, False)
    t.seeds = list(cfg.tune.forget_seeds)
    t.attack.enabled = bool(cfg.attack.enabled) and str(cfg.tune.objective) == "avg_gap_rcd"
    t.eval.population.k = 0
    t.tuned = False
    t.shard = None
    OmegaConf.set_struct(t, True)
    return t


def check_tune(cfg: Any) -> tuple[list[str], list[float | None]]:
    """Everything ``tune`` rejects, before any data loads: returns (methods, ratios).

    Raises:
        BenchmarkError: held-out seeds that overlap ``seeds``; a fixed forget draw
            (``forget.seed``); ``shard``; a method with nothing to search; a bad storage URL.
    """
    t = cfg.tune
    overlap = sorted(set(t.forget_seeds) & set(cfg.seeds))
    if overlap:
        fail("tune.forget_seeds", list(t.forget_seeds), f"overlaps seeds={list(cfg.seeds)} (the reported draws) in "
             f"{overlap}", f"tune on held-out draws, e.g. tune.forget_seeds=[{max(cfg.seeds) + 1000}]")
    if cfg.forget.get("seed") is not None:
        fail("forget.seed", cfg.forget.seed, "fixes D_f for every seed, so the held-out draws would forget the "
             "reported D_f", "tune with forget.seed=null (the tuned file applies to the fixed draw too)")
    if cfg.get("shard"):
        fail("shard", cfg.shard, "does not apply to tune", "run several `tune` processes on one tune.storage "
             "instead (they share each study)")
    storage_url(cfg)  # a malformed URL: one line now
    if str(t.objective) == "avg_gap_rcd" and not cfg.attack.enabled:
        fail("tune.objective", t.objective, "reads RCD, but attack.enabled=false", "drop attack.enabled=false, or "
             "tune with tune.objective=avg_gap")
    tcfg = trial_config(cfg)
    listed, ratios, _, _, unfit = check_plan(tcfg)
    if t.methods is None:
        methods = [m for m in listed if tuned.tunable(m)]
        if not methods:
            raise BenchmarkError(f"none of methods={OmegaConf.to_container(cfg.methods) if OmegaConf.is_config(cfg.methods) else cfg.methods}"
                                 " has a search_space to tune; name some, e.g. tune.methods=[finetune]")
        return methods, ratios
    methods = [str(m) for m in t.methods]
    for m in methods:
        cls = METHODS.get(m)
        variant = hparams.variant_of(m)
        if variant is not None:
            fail("tune.methods", methods, f"names {m}, a variant of {variant[0]}: a variant runs with its base's tuned "
                 f"values and its own knobs ({', '.join(sorted(variant[1]))})", f"tune {variant[0]} instead")
        if not hparams.search_space(m):
            fail("tune.methods", methods, f"names {m}, which has no search_space (nothing to tune)",
                 "leave it out; original, retrain and one-shot methods without knobs run at their defaults")
        scen = str(cfg.forget.scenario)
        if cls.scenarios and scen not in cls.scenarios:
            fail("tune.methods", methods, f"names {m}, which does not support forget.scenario={scen}",
                 f"leave it out, or tune it with forget.scenario={cls.scenarios[0]}")
    hparams.validate(tcfg, methods)
    return methods, ratios


def storage_url(cfg: Any) -> str:
    """``tune.storage``, or ``sqlite:///<output_dir>/tune.db``; checked for form (SQLAlchemy URL)."""
    url = cfg.tune.storage or f"sqlite:///{Path(str(cfg.output_dir)).expanduser().resolve() / 'tune.db'}"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(str(url))
    except ArgumentError:
        fail("tune.storage", url, "is not a database URL", "use e.g. tune.storage=sqlite:///tune.db or "
             "tune.storage=postgresql://user@host/db, or tune.storage=null for SQLite in output_dir")
    return str(url)


def masked(url: str) -> str:
    """The URL as provenance records it: without its password, and a SQLite file under the
    working directory relative to it (no machine's home folder in a shipped file)."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        path = Path(u.database).expanduser().resolve()
        if path.is_relative_to(Path.cwd()):
            return f"sqlite:///{path.relative_to(Path.cwd())}"
    return u.render_as_string(hide_password=True)


# -- the objective -----------------------------------------------------------------------------

def tuning_values(ds: Any, cfg: Any, g: Group, full: Any, oracle_values: dict[str, Any] | None = None
                  ) -> tuple[dict[str, Any], dict[str, str]]:
    """The registered metrics a trial is scored on, with D_val standing in for D_test: ``eval/ta``
    is D_val accuracy, MIA-efficacy's non-members are D_val, and with the oracle's values
    ``gap/avg`` is the Avg Gap on them. Nothing here reads D_test."""
    view = {**full, "test": full["val"]}
    names = TUNE_KEYS + (["gap/avg"] if oracle_values is not None else [])
    return compute_metrics(metric_context(ds, cfg, g, view, oracle_values=oracle_values), names)


def _suggest(trial: Any, space: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, spec in space.items():
        kind = spec[0]
        if kind == "categorical":
            out[k] = trial.suggest_categorical(k, list(spec[1]))
        elif kind == "int":
            out[k] = trial.suggest_int(k, int(spec[1]), int(spec[2]))
        else:
            out[k] = trial.suggest_float(k, float(spec[1]), float(spec[2]), log=kind == "log")
    return out


def defaults_in_space(base: dict[str, Any], space: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
    """The declared values of the searched knobs that lie inside the search space (trial 0)."""
    out = {}
    for k, spec in space.items():
        v = base.get(k)
        if spec[0] == "categorical":
            ok = v in spec[1]
        elif spec[0] == "int":
            ok = isinstance(v, int) and not isinstance(v, bool) and spec[1] <= v <= spec[2]
        else:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and spec[1] <= v <= spec[2]
        if ok:
            out[k] = v
    return out


class _TrialFailed(Exception):
    pass


class Tuner:
    """Tunes the methods of one composed configuration (``benchmark.config.compose``)."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.methods, self.ratios = check_tune(cfg)
        self.tcfg = trial_config(cfg)
        self.objective = str(cfg.tune.objective)
        self.direction = OBJECTIVES[self.objective]  # a (gap, rcd) pair for the two-objective study
        self.multi = isinstance(self.direction, tuple)
        self.budget = int(cfg.tune.trials)
        self.seeds = [int(s) for s in cfg.tune.forget_seeds]
        self.out = check_writable(cfg.output_dir)
        self.url = storage_url(cfg)
        self.file = Path(str(cfg.tune.file)).expanduser() if cfg.tune.get("file") else tuned.default_path(cfg)
        if cfg.trainer.get("cpu_threads"):
            torch.set_num_threads(int(cfg.trainer.cpu_threads))
        self.device = eval_device(cfg.trainer)
        d = cfg.data
        self.ds = load_dataset(str(d.name), d.root, bool(d.download), cache_dir=str(Path(cfg.cache_dir)))
        self.optuna = _optuna()
        self.storage = self._storage()

    def _storage(self) -> Any:
        from sqlalchemy.engine import make_url

        url = make_url(self.url)
        kw: dict[str, Any] = {}
        self.lock = None
        if url.get_backend_name() == "sqlite":
            kw = {"connect_args": {"timeout": 120}}  # concurrent workers wait for the write lock
            if url.database and url.database != ":memory:":
                Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
                self.lock = FileLock(str(url.database) + ".lock")
        try:
            with self.lock or _nolock():  # creating the tables is not safe to race on SQLite
                return self.optuna.storages.RDBStorage(self.url, engine_kwargs=kw, heartbeat_interval=HEARTBEAT_S,
                                                       grace_period=GRACE_S)
        except Exception as e:  # noqa: BLE001 - a missing driver, a refused connection: one line
            why = " ".join(str(e).split())[:140]
            raise BenchmarkError(f"tune.storage={masked(self.url)}: cannot open it ({type(e).__name__}: {why}); "
                                 "check the URL and that its driver is installed") from None

    def run(self) -> list[StudyReport]:
        cfg = self.cfg
        print(f"[tune] {cfg.dataset}/{cfg.model}/{cfg.forget.scenario}: {len(self.methods)} methods x {self.budget} "
              f"trials, objective {self.objective}, held-out forget seeds {self.seeds}, storage "
              f"{masked(self.url)}", flush=True)
        if tuned_fixed_draw(cfg):
            print("warning: this scenario fixes D_f (forget.classes or forget.indices_file), so the held-out draws "
                  "differ from the reported ones only in the models' seeds", flush=True)
        reports, entries = [], {}
        for ratio in self.ratios:
            setting = tuned.setting_key(cfg, ratio)
            groups = {s: prepare_group(self.tcfg, self.ds, ratio, s, self.device) for s in self.seeds}
            refs = {s: self._reference_values(g) for s, g in groups.items()}
            if self.multi:
                self._check_rcd_draws(setting, refs)
            for m in self.methods:
                rep = self._study(m, ratio, setting, groups, refs)
                reports.append(rep)
                if rep.entry is not None:
                    entries.setdefault(setting, {})[m] = rep.entry
        if entries:
            path = tuned.write_entries(self.file, cfg, entries)
            print(f"[tune] best values -> {path}", flush=True)
        print(f"[tune] every trial -> {self.export()}", flush=True)
        return reports

    def _reference_values(self, g: Group) -> dict[str, Any]:
        oracle, _ = tuning_values(self.ds, self.tcfg, g, g.oracle_outputs)
        original, _ = tuning_values(self.ds, self.tcfg, g, g.original_outputs)
        rcd_undefined = (g.attack.levels.acc_undefined_reason if g.attack else "the attack is off") \
            if self.multi else None
        return {"oracle": oracle, "original_val_acc": original["eval/val/acc"], "rcd_undefined": rcd_undefined}

    def _check_rcd_draws(self, setting: str, refs: dict[int, dict[str, Any]]) -> None:
        """The headline RCD is undefined on a draw whose oracle forgets nothing measurable (a
        property of the draw, the same for every trial): the RCD objective averages the other
        draws, and with none left ``tune`` stops in one line."""
        bad = {s: r["rcd_undefined"] for s, r in refs.items() if r["rcd_undefined"]}
        for s, why in bad.items():
            print(f"[tune] {setting} forget seed {s}: headline RCD undefined ({why}); the RCD objective averages "
                  f"the other draws", flush=True)
        if len(bad) == len(refs):
            raise BenchmarkError(f"tune.objective=avg_gap_rcd: the headline RCD is undefined on every held-out draw "
                                 f"of {setting} ({next(iter(bad.values()))}); add draws with tune.forget_seeds, or "
                                 "use tune.objective=avg_gap")

    # -- one study -----------------------------------------------------------------------------

    def study_identity(self, method: str, ratio: float | None, base: dict[str, Any],
                       space: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
        """Everything that changes a trial's number except the budget (the study's name hashes it)."""
        ident = cell_identity(self.tcfg, method, ratio, -1, {k: v for k, v in base.items() if k not in space})
        ident.update(seed=None, forget_seeds=self.seeds, objective=self.objective, search_space=space,
                     sampler={"name": "TPESampler", "seed": int(self.cfg.tune.sampler_seed)},
                     code=code_fingerprint(METHODS.get(method))["fingerprint"])
        if self.objective == "oracle_free":
            ident["val_tolerance"] = float(self.cfg.tune.val_tolerance)
        if self.multi:  # RCD depends on the attack (its budget, attackers and repeats)
            ident["attack"] = to_dict(self.tcfg.attack)
        return ident

    def _study(self, method: str, ratio: float | None, setting: str, groups: dict[int, Group],
               refs: dict[int, dict[str, Any]]) -> StudyReport:
        optuna, cfg = self.optuna, self.cfg
        space = hparams.search_space(method)
        base = hparams.resolve(method, self.tcfg)
        name = (f"{cfg.dataset}-{cfg.model}-{cfg.forget.scenario}-{setting}-{method}-{self.objective}-"
                f"{digest(self.study_identity(method, ratio, base, space), 10)}")
        rep = StudyReport(method, setting, name, self.budget)
        constraints = None  # Optuna >= 5 reads trial.set_constraint; older versions ask the sampler
        if self.objective == "oracle_free" and not hasattr(optuna.trial.Trial, "set_constraint"):
            constraints = lambda t: t.user_attrs.get("constraint", [0.0])  # noqa: E731
        sampler = optuna.samplers.TPESampler(seed=int(cfg.tune.sampler_seed), constraints_func=constraints)
        with self.lock or _nolock():
            try:
                study = optuna.create_study(study_name=name, storage=self.storage, sampler=sampler,
                                            **({"directions": list(self.direction)} if self.multi
                                               else {"direction": self.direction}))
                study.set_user_attr("suite", {"dataset": str(cfg.dataset), "model": str(cfg.model),
                                              "scenario": str(cfg.forget.scenario), "setting": setting,
                                              "method": method, "objective": self.objective})
                first = defaults_in_space(base, space)
                if first:
                    study.enqueue_trial(first, user_attrs={"defaults": True})
            except optuna.exceptions.DuplicatedStudyError:  # a rerun, or another worker made it first
                study = optuna.load_study(study_name=name, storage=self.storage, sampler=sampler)

        def objective(trial: Any) -> float | tuple[float, float]:
            # Optuna's storage is written only here, in the held section around optimize (a signal
            # never cuts a write: an interrupted SQLite transaction would keep the database locked);
            # a heartbeat before the mark: a trial killed before the mark has neither, after it a heartbeat
            self.storage.record_heartbeat(trial._trial_id)
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
            params = _suggest(trial, space)
            t0 = time.perf_counter()
            try:
                with signals_released():  # a SIGTERM/SIGINT cuts the trial's work at once
                    draws = self._evaluate(trial.number, method, ratio, {**base, **params}, groups, refs)
            except (Interrupted, SystemExit, KeyboardInterrupt):  # Lightning may turn it into SystemExit
                if received_signal() is None:
                    raise
                raise KeyboardInterrupt from None  # Optuna marks the trial FAIL (no reason: it is rerun)
            except _TrialFailed as e:
                trial.set_user_attr("fail_reason", str(e))
                print(f"[tune] {method} trial {trial.number}: FAILED: {e}", flush=True)
                return (math.nan, math.nan) if self.multi else math.nan  # Optuna records FAIL; the study goes on
            return self._record(trial, method, params, draws, time.perf_counter() - t0)

        t0, seen, since, waiting = time.perf_counter(), None, time.monotonic(), False
        while True:
            done, running = _tally(study)
            if done >= self.budget:
                break
            if (done, running) != seen:
                seen, since = (done, running), time.monotonic()
            if done + running >= self.budget:  # the last trials run elsewhere, or were cut by a kill
                if time.monotonic() - since > STALL_S:
                    rep.notes.append(f"{running} trial(s) still RUNNING after {STALL_S} s without change; "
                                     "rerun to finish the budget")
                    break
                if not waiting:
                    waiting = True
                    print(f"[tune] {method}: waiting for {running} trial(s) in flight (another process, or one "
                          f"cut by a kill: failed after {GRACE_S} s without a heartbeat)", flush=True)
                self._fail_abandoned(study)
                time.sleep(WAIT_S)
                continue
            with signals_held():  # Optuna's own bookkeeping is never cut half-way (no trial left RUNNING)
                study.optimize(objective, n_trials=1)
            rep.ran_here += 1
        rep.wall_s = time.perf_counter() - t0
        self._summarise(study, rep, base, space)
        return rep

    def _fail_abandoned(self, study: Any) -> None:
        """Fails the RUNNING trials no process works on: those whose heartbeat stopped for GRACE_S
        (Optuna's own check), and those killed before their first heartbeat (no ``worker`` mark,
        started more than GRACE_S ago), which Optuna's check cannot see."""
        S = self.optuna.trial.TrialState
        self.optuna.storages.fail_stale_trials(study)
        now = datetime.now()  # Optuna stamps datetime_start with the local clock of the worker
        for t in study.get_trials(deepcopy=False, states=(S.RUNNING,)):
            if "worker" not in t.user_attrs and t.datetime_start is not None \
                    and (now - t.datetime_start).total_seconds() > GRACE_S:
                study.tell(t.number, state=S.FAIL, skip_if_finished=True)

    def _evaluate(self, number: int, method: str, ratio: float | None, hp: dict[str, Any],
                  groups: dict[int, Group], refs: dict[int, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Runs the method with ``hp`` on every held-out draw: per draw, the tuning metrics."""
        draws: dict[str, dict[str, Any]] = {}
        for seed, g in groups.items():
            cell = Cell(method, ratio, seed, hp, "", {}, {"cell_id": f"tune-{number}-{seed}"}, {})
            res = run_cell(self.tcfg, self.ds, g, cell, self.device, None)
            if res.status != "ok":
                raise _TrialFailed(f"forget seed {seed}: {res.error}")
            if self.objective in ("avg_gap", "avg_gap_rcd"):
                vals, why = tuning_values(self.ds, self.tcfg, g, res.outputs, refs[seed]["oracle"])
                if vals.get("gap/avg") is None:
                    raise _TrialFailed(f"forget seed {seed}: Avg Gap undefined ({why.get('gap/avg')})")
            else:
                vals, why = tuning_values(self.ds, self.tcfg, g, res.outputs)
                if vals.get("eval/ua") is None or vals.get("eval/val/acc") is None:
                    raise _TrialFailed(f"forget seed {seed}: UA or D_val accuracy undefined")
            draws[str(seed)] = {"ua": vals["eval/ua"], "ra": vals["eval/ra"], "val_acc": vals["eval/val/acc"],
                                "mia_efficacy": vals["eval/mia/efficacy"], "avg_gap": vals.get("gap/avg"),
                                "val_drop": refs[seed]["original_val_acc"] - vals["eval/val/acc"],
                                "unlearn_s": res.timings.get("unlearn_s")}
            if self.multi:
                draws[str(seed)]["rcd"] = None if refs[seed]["rcd_undefined"] else self._rcd(seed, res)
        value = self._value(draws)
        if not all(math.isfinite(v) for v in (value if self.multi else (value,))):
            raise _TrialFailed(f"the objective is not finite ({value})")
        return draws

    def _rcd(self, seed: int, res: Any) -> float:
        """The headline RCD (accuracy-based) of a trial on one draw, averaged over the attackers;
        a censored one counts as its lower bound, as the table shows it."""
        keys = [f"relearn/{a}/rcd_acc" for a in self.tcfg.attack.attackers]
        vals = [res.metrics.get(k) for k in keys]
        missing = [k for k, v in zip(keys, vals, strict=True) if v is None]
        if missing:
            raise _TrialFailed(f"forget seed {seed}: {missing[0]} undefined ({res.undefined.get(missing[0])})")
        return sum(vals) / len(vals)

    def _value(self, draws: dict[str, dict[str, Any]]) -> float | tuple[float, float]:
        def mean(key: str) -> float:
            return sum(d[key] for d in draws.values()) / len(draws)

        if self.multi:  # RCD over the draws where it is defined (_check_rcd_draws)
            rcd = [d["rcd"] for d in draws.values() if d["rcd"] is not None]
            return mean("avg_gap"), sum(rcd) / len(rcd)
        return mean("avg_gap" if self.objective == "avg_gap" else "ua")

    def _record(self, trial: Any, method: str, params: dict[str, Any], draws: dict[str, dict[str, Any]],
                seconds: float) -> float:
        """Stores a finished trial's per-draw metrics (and the oracle-free constraint); its value."""
        value = self._value(draws)
        trial.set_user_attr("draws", draws)
        trial.set_user_attr("seconds", seconds)
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
        extra = ""
        if self.objective == "oracle_free":
            tol = float(self.cfg.tune.val_tolerance)
            drop = sum(d["val_drop"] for d in draws.values()) / len(draws)
            trial.set_user_attr("constraint", [drop - tol])  # <= 0: feasible
            if hasattr(trial, "set_constraint"):
                trial.set_constraint("val_drop", drop - tol)
            trial.set_user_attr("feasible", drop <= tol)
            extra = f", D_val drop {drop:.1f}{'' if drop <= tol else ' (infeasible)'}"
        shown_value = f"Avg Gap {value[0]:.3f}, RCD {value[1]:.3f}" if self.multi else f"{self.objective} {value:.3f}"
        print(f"[tune] {method} trial {trial.number}: {shown_value}{extra} ({shown}; {seconds:.1f} s)", flush=True)
        return value

    def _summarise(self, study: Any, rep: StudyReport, base: dict[str, Any], space: dict[str, tuple[Any, ...]]) -> None:
        S = self.optuna.trial.TrialState
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == S.COMPLETE]
        rep.complete = len(complete)
        rep.failed = sum(t.state == S.FAIL and "fail_reason" in t.user_attrs for t in trials)
        rep.trial_s = sum(float(t.user_attrs.get("seconds") or 0.0) for t in trials)
        pool = [t for t in complete if t.user_attrs.get("feasible", True)]
        if not pool:
            rep.notes.append("no complete trial" if not complete else
                             f"no trial keeps D_val accuracy within {self.cfg.tune.val_tolerance} points")
            return
        defaults = next((t for t in complete if t.user_attrs.get("defaults")), None)
        cfg = self.cfg
        if self.multi:
            tol = float(cfg.tune.gap_tolerance)
            by_number = {t.number: t for t in pool}
            chosen, front = select_on_front([(t.number, t.values) for t in pool], tol)
            rep.best = by_number[chosen]
            rcd_seeds = [int(s) for s, d in (rep.best.user_attrs.get("draws") or {}).items() if d.get("rcd") is not None]
            extra = {"values": [float(v) for v in rep.best.values], "gap_tolerance": tol, "rcd_forget_seeds": rcd_seeds,
                     "defaults_values": [float(v) for v in defaults.values] if defaults is not None else None,
                     "pareto": [{"trial": n, "values": [float(v) for v in by_number[n].values],
                                 "params": dict(by_number[n].params)} for n in front]}
            value = float(rep.best.values[0])
            defaults_value = float(defaults.values[0]) if defaults is not None else None
        else:
            sign = 1.0 if self.direction == "minimize" else -1.0
            rep.best = min(pool, key=lambda t: (sign * t.value, t.number))
            extra, value = {}, float(rep.best.value)
            defaults_value = float(defaults.value) if defaults is not None else None
        rep.entry = {
            "params": dict(rep.best.params), "value": value, "objective": self.objective,
            "direction": list(self.direction) if self.multi else self.direction, "best_trial": rep.best.number,
            "defaults_value": defaults_value, **extra,
            "budget": self.budget, "complete": rep.complete, "failed": rep.failed,
            "trial_seconds": round(rep.trial_s, 2),
            "sampler": "TPESampler", "sampler_seed": int(cfg.tune.sampler_seed), "forget_seeds": self.seeds,
            **({"val_tolerance": float(cfg.tune.val_tolerance)} if self.objective == "oracle_free" else {}),
            "search_space": {k: list(v) for k, v in space.items()},
            "fixed": {k: v for k, v in base.items() if k not in space},
            "code_fingerprint": code_fingerprint(METHODS.get(rep.method))["fingerprint"],
            "study": rep.study, "storage": masked(self.url),
            "date": _last_finished(trials), "git": git_revision(),
            "protocol_version": PROTOCOL_VERSION,
        }

    # -- every trial, exported -------------------------------------------------------------------

    def export(self) -> Path:
        """Every trial of this (dataset, model, scenario)'s studies in the storage, one JSON line
        each, to ``<output_dir>/tune/trials.jsonl`` (rewritten whole, atomically, under a lock)."""
        optuna, cfg = self.optuna, self.cfg
        path = self.out / "tune" / "trials.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        want = {"dataset": str(cfg.dataset), "model": str(cfg.model), "scenario": str(cfg.forget.scenario)}
        with FileLock(str(path) + ".lock"):
            lines = []
            for s in sorted(self.storage.get_all_studies(), key=lambda s: s.study_name):
                suite = s.user_attrs.get("suite") or {}
                if any(suite.get(k) != v for k, v in want.items()):
                    continue
                study = optuna.load_study(study_name=s.study_name, storage=self.storage)
                directions = [d.name.lower() for d in study.directions]
                if len(directions) > 1:  # the selection rule of the front, as this tune applied it
                    suite = {**suite, "gap_tolerance": float(cfg.tune.gap_tolerance)}
                for t in study.get_trials(deepcopy=False):
                    lines.append(json.dumps(_trial_line(s.study_name, suite, directions, t),
                                            sort_keys=True, default=str))
            atomic_write_text(path, "".join(line + "\n" for line in lines))
        return path


def _trial_line(name: str, suite: dict[str, Any], directions: list[str], t: Any) -> dict[str, Any]:
    """One exported trial. ``value`` is the (first) objective; a two-objective study adds
    ``directions`` and ``values`` (Avg Gap, RCD)."""
    dur = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start \
        else None
    values = [v if v is not None and math.isfinite(v) else None for v in (t.values or [])] or [None]
    from optuna.distributions import distribution_to_json

    multi = {"directions": directions, "values": values} if len(directions) > 1 else {}
    return {"study": name, **suite, "direction": directions[0], **multi, "number": t.number,
            "state": t.state.name, "value": values[0], "params": t.params, "user_attrs": t.user_attrs,
            "distributions": {k: distribution_to_json(d) for k, d in t.distributions.items()},
            "start": t.datetime_start, "complete": t.datetime_complete, "duration_s": dur}


def select_on_front(points: list[tuple[int, Any]], gap_tolerance: float) -> tuple[int, list[int]]:
    """The two-objective selection: ``points`` are (trial number, (Avg Gap, RCD)) of the feasible
    complete trials. Returns (the selected trial, the Pareto front's trials by Avg Gap): the front's
    trial with the highest RCD among those within ``gap_tolerance`` of its lowest Avg Gap (ties: the
    lower Avg Gap, then the lower number)."""
    front = [(n, g, r) for n, (g, r) in points
             if not any((g2 <= g and r2 >= r) and (g2 < g or r2 > r) for _, (g2, r2) in points)]
    front.sort(key=lambda p: (p[1], -p[2], p[0]))
    low = front[0][1]
    pick = min((p for p in front if p[1] <= low + gap_tolerance), key=lambda p: (-p[2], p[1], p[0]))
    return pick[0], [p[0] for p in front]


def _last_finished(trials: list[Any]) -> str:
    """When the search ended: the last trial's completion, in UTC (Optuna stamps local time)."""
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    when = max(ends).astimezone(timezone.utc) if ends else datetime.now(timezone.utc)
    return when.isoformat(timespec="seconds")


def _tally(study: Any) -> tuple[int, int]:
    """(finished trials that count against the budget, trials running now)."""
    from optuna.trial import TrialState as S

    trials = study.get_trials(deepcopy=False)
    done = sum(t.state == S.COMPLETE or (t.state == S.FAIL and "fail_reason" in t.user_attrs) for t in trials)
    return done, sum(t.state == S.RUNNING for t in trials)


def tuned_fixed_draw(cfg: Any) -> bool:
    f = cfg.forget
    return bool(f.get("indices_file")) or (str(f.scenario) == "class" and bool(f.get("classes")))


class _nolock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def tune(args: list[str]) -> list[StudyReport]:
    """``python -m benchmark tune ARGS``: every configuration checked first, then tuned."""
    tuners = [Tuner(cfg) for cfg in compose_grid(list(args))]
    reports = []
    for t in tuners:
        reports += t.run()
    for r in reports:
        total = r.complete + r.failed
        if r.best is not None:
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.best.params.items())
            what = (f"Avg Gap {r.best.values[0]:.3f}, RCD {r.best.values[1]:.3f} (of {len(r.entry['pareto'])} on the "
                    "Pareto front)" if r.entry and "pareto" in r.entry else f"{r.best.value:.3f}")
            best = f"best {what} (trial {r.best.number}: {shown})"
        else:
            best = "; ".join(r.notes)
        print(f"[tune] {r.method} {r.setting}: {total}/{r.budget} trials ({r.complete} complete, {r.failed} failed; "
              f"{r.ran_here} run here), {best}; {r.wall_s:.1f} s here, {r.trial_s:.1f} s of trials", flush=True)
    return reports
