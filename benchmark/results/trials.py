"""The tuning trials ``python -m benchmark tune`` exports (``<output_dir>/tune/trials.jsonl``), read
for the report: one :class:`StudyTrials` per study, with its best trial and Optuna's parameter
importances (fANOVA, on an in-memory copy of the study; the database is not needed). A
two-objective study (``tune.objective=avg_gap_rcd``) also gives its Pareto front."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRIALS = Path("tune") / "trials.jsonl"


@dataclass
class StudyTrials:
    """One study's exported trials (dicts of :func:`benchmark.tune._trial_line`)."""

    name: str
    suite: dict[str, Any]  # dataset, model, scenario, setting, method, objective (+ gap_tolerance)
    direction: str  # "minimize" | "maximize" (of the first objective)
    trials: list[dict[str, Any]] = field(default_factory=list)
    directions: list[str] | None = None  # two objectives: ["minimize", "maximize"] (Avg Gap, RCD)

    @property
    def method(self) -> str:
        return str(self.suite.get("method", "?"))

    @property
    def setting(self) -> str:
        return str(self.suite.get("setting", "?"))

    def complete(self) -> list[dict[str, Any]]:
        """The COMPLETE trials with a finite value, by trial number."""
        return sorted((t for t in self.trials if t.get("state") == "COMPLETE" and _finite(t.get("value"))),
                      key=lambda t: t["number"])

    @property
    def multi(self) -> bool:
        return bool(self.directions) and len(self.directions) > 1

    def _pool(self) -> list[dict[str, Any]]:
        pool = [t for t in self.complete() if (t.get("user_attrs") or {}).get("feasible", True)]
        if self.multi:
            pool = [t for t in pool if len(t.get("values") or []) == 2 and all(_finite(v) for v in t["values"])]
        return pool

    def best(self) -> dict[str, Any] | None:
        """The best complete trial that is feasible (the lowest number among ties), as ``tune`` selects
        it; with two objectives, :func:`benchmark.tune.select_on_front`'s choice on the front."""
        pool = self._pool()
        if not pool:
            return None
        if self.multi:
            from benchmark.tune import select_on_front

            n, _ = select_on_front([(t["number"], t["values"]) for t in pool], float(self.suite.get("gap_tolerance") or 0))
            return next(t for t in pool if t["number"] == n)
        sign = 1.0 if self.direction == "minimize" else -1.0
        return min(pool, key=lambda t: (sign * t["value"], t["number"]))

    def front(self) -> list[dict[str, Any]]:
        """A two-objective study's Pareto front, by Avg Gap; [] for one objective."""
        pool = self._pool()
        if not self.multi or not pool:
            return []
        from benchmark.tune import select_on_front

        _, numbers = select_on_front([(t["number"], t["values"]) for t in pool], 0.0)
        by_number = {t["number"]: t for t in pool}
        return [by_number[n] for n in numbers]

    def defaults(self) -> dict[str, Any] | None:
        """Trial 0 when it ran the declared defaults."""
        return next((t for t in self.complete() if (t.get("user_attrs") or {}).get("defaults")), None)

    def failed(self) -> int:
        return sum(t.get("state") == "FAIL" and "fail_reason" in (t.get("user_attrs") or {}) for t in self.trials)

    def seconds(self) -> float:
        return sum(float((t.get("user_attrs") or {}).get("seconds") or 0.0) for t in self.trials)

    def importances(self) -> dict[str, float] | None:
        """Optuna's parameter importances (fANOVA) over the complete trials; None with fewer than
        two complete trials, trials exported without their distributions, or nothing that varied."""
        done = self.complete()
        if len(done) < 2 or any(not t.get("distributions") for t in done):
            return None
        import optuna
        from optuna.distributions import json_to_distribution

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study = optuna.create_study(direction=self.direction)
        for t in done:
            dists = {k: json_to_distribution(v) for k, v in t["distributions"].items()}
            study.add_trial(optuna.trial.create_trial(params=t["params"], distributions=dists, value=t["value"]))
        if len(dists) == 1:
            return {next(iter(dists)): 1.0}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return dict(optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)))
        except (RuntimeError, ValueError):  # e.g. every trial had the same values
            return None


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_trials(output_dir: str | Path) -> list[StudyTrials]:
    """The studies of ``<output_dir>/tune/trials.jsonl`` in file order; [] when there is none.
    Lines that are not JSON objects are skipped (the file is rewritten whole by ``tune``)."""
    path = Path(output_dir) / TRIALS
    if not path.is_file():
        return []
    studies: dict[str, StudyTrials] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            t = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(t, dict) or not isinstance(t.get("study"), str):
            continue
        s = studies.get(t["study"])
        if s is None:
            suite = {k: t.get(k) for k in ("dataset", "model", "scenario", "setting", "method", "objective",
                                           "gap_tolerance")}
            dirs = t.get("directions")
            s = studies[t["study"]] = StudyTrials(t["study"], suite, str(t.get("direction") or "minimize"),
                                                  directions=[str(d) for d in dirs] if isinstance(dirs, list) else None)
        s.trials.append(t)
    return list(studies.values())
