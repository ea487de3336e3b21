"""Stage 4, the typed cell result, and the one record it becomes.

A :class:`CellResult` carries everything the sinks need in memory (metrics, curves,
levels, diagnostics); :meth:`CellResult.record` is the self-describing line of
``results.jsonl``: identity keys, resolved configuration and hyperparameters, code
fingerprint, versions, status, metrics with their directions and undefined reasons.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from benchmark.config import to_dict
from benchmark.metrics import metric_directions
from benchmark.results import git_revision, package_versions
from benchmark.stages.plan import Cell
from benchmark.version import PROTOCOL_VERSION


@dataclass
class CellResult:
    """The outcome of one cell. ``status``: ok | failed | skipped (only a method's refusal)."""

    cell: Cell
    status: str
    split_hash: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    undefined: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    warnings: list[str] = field(default_factory=list)
    reference_keys: dict[str, str] = field(default_factory=dict)
    world_size: int = 1
    effective_batch: int | None = None
    timings: dict[str, float | None] = field(default_factory=dict)
    curves: dict[str, Any] = field(default_factory=dict)
    levels: Any = None
    diagnostics: list[dict[str, float]] = field(default_factory=list)
    population: dict[str, Any] | None = None  # per-example epsilons (eval.population), for figures
    samples: Any = None  # task=generate: the generator's scored samples (SampleEval; its scores are recorded)
    net: Any = None  # the unlearned network (not serialised)
    outputs: Any = None  # its full outputs (not serialised)

    def skip(self, reason: str) -> CellResult:
        self.status, self.error = "skipped", reason
        self.metrics, self.undefined = {}, {}
        return self

    def fail(self, reason: str, tb: str | None = None) -> CellResult:
        self.status, self.error, self.traceback = "failed", reason, tb
        self.metrics, self.undefined = {}, {}
        return self

    def levels_dict(self) -> dict[str, float] | None:
        lv = self.levels
        if lv is None:
            return None
        return {"L_o": lv.loss_original, "L_r": lv.loss_oracle, "L_star": lv.target_loss,
                "A_o": lv.acc_original, "A_r": lv.acc_oracle, "A_star": lv.target_acc}

    def record(self, cfg: Any) -> dict[str, Any]:
        """The result record (one JSON line)."""
        c = self.cell
        attackers = sorted({k.split("/")[1] for k in self.metrics if k.startswith("relearn/")})
        rec: dict[str, Any] = {
            **c.keys, "status": self.status, "dataset": str(cfg.dataset), "model": str(cfg.model),
            "method": c.method, "variant": c.variant, "hparams": c.hparams, "hparams_source": c.hparams_source,
            "scenario": str(cfg.forget.scenario), "ratio": c.ratio, "seed": c.seed, "split_hash": self.split_hash,
            "protocol_version": PROTOCOL_VERSION, "identity": c.identity, "code": c.code,
            "config": to_dict(cfg), "versions": package_versions(), "git": git_revision(),
            "warnings": self.warnings, "reference": self.reference_keys, "world_size": self.world_size,
            "effective_batch": self.effective_batch, "time": time.time(),
        }
        if c.tuned:
            rec["tuned"] = c.tuned
        if self.samples is not None and self.status == "ok":  # task=generate: per-class scores of the samples
            rec["samples"] = self.samples.to_dict()  # the tuned file (path, sha256), the forget setting and the study
        if self.status == "ok":
            rec.update(metrics=self.metrics, undefined=self.undefined,
                       directions={k: d for k, d in metric_directions(attackers).items() if k in self.metrics})
        else:
            rec.update(metrics={}, error=self.error)
            if self.traceback:
                rec["traceback"] = self.traceback
        return rec
