"""The one metric registry and the evaluation context.

Every number the suite reports is a registered :class:`Metric`: its record key,
direction, one-line doc, table title, and what it needs (``requires``): the model's
cached outputs, the oracle's values, the weights, the timings, or the relearning
curves. ``list metrics``, each record's ``directions``, the table columns, the
progress line and W&B all derive from this registry; :func:`compute_metrics`
evaluates every metric whose requirements a :class:`MetricContext` holds and
returns record-ready ``(values, reasons)``, so no metric can put a NaN in a record.

Relearning metrics are registered once per key template (``relearn/{attacker}/rcd``)
and expanded for each attacker of the cell.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark.errors import BenchmarkError
from benchmark.metrics.values import MetricValue, Undefined, split_values
from benchmark.registry import Registry

if TYPE_CHECKING:
    from benchmark.metrics.outputs import ModelOutputs, SplitOutputs

#: "higher"/"lower": that way is better. "oracle": closer to the retrain oracle's
#: value is better. "info": not a score (a sample size, a distance with no target).
DIRECTIONS: tuple[str, ...] = ("higher", "lower", "oracle", "info")

#: What a metric may need beyond the model's own outputs.
REQUIREMENTS: tuple[str, ...] = ("outputs", "references", "oracle", "weights", "timings", "curves", "population",
                                 "samples")

ATTACKER = "{attacker}"  # the placeholder of per-attacker key templates


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    Attributes:
        name: The record key, ``phase/split/metric`` (e.g. ``eval/forget/acc``), or a
            template with ``{attacker}`` (``relearn/{attacker}/rcd``).
        direction: One of :data:`DIRECTIONS`.
        doc: The definition (the function's docstring).
        fn: ``fn(ctx) -> float | Undefined``; ``fn(ctx, attacker)`` for templates.
        requires: What the context must hold (:data:`REQUIREMENTS`).
        class_only: Only defined in the class-forgetting scenario.
        title: Column title in tables (None: not a table column).
        digits: Decimals shown in tables.
        order: Position among the table columns.
        progress: Shown on the per-cell progress line.
    """

    name: str
    direction: str
    doc: str
    fn: Callable[..., MetricValue]
    requires: tuple[str, ...] = ("outputs",)
    class_only: bool = False
    title: str | None = None
    digits: int = 1
    order: int = 100
    progress: bool = False

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise BenchmarkError(f"metric {self.name!r}: direction {self.direction!r} not in {DIRECTIONS}")
        bad = [r for r in self.requires if r not in REQUIREMENTS]
        if bad:
            raise BenchmarkError(f"metric {self.name!r}: unknown requirement {bad[0]!r}; use {REQUIREMENTS}")

    @property
    def per_attacker(self) -> bool:
        return ATTACKER in self.name

    @property
    def summary(self) -> str:
        """The first line of the definition."""
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""

    def keys(self, attackers: Sequence[str]) -> list[str]:
        """The record keys of this metric for the given attackers."""
        return [self.name.format(attacker=a) for a in attackers] if self.per_attacker else [self.name]


METRICS: Registry[Metric] = Registry("metric")


def register_metric(name: str, direction: str, *, requires: tuple[str, ...] = ("outputs",),
                    class_only: bool = False, title: str | None = None, digits: int = 1, order: int = 100,
                    progress: bool = False, doc: str | None = None
                    ) -> Callable[[Callable[..., MetricValue]], Callable[..., MetricValue]]:
    """Decorator registering ``fn`` as the metric ``name``; its docstring (or ``doc``) is the definition."""

    def deco(fn: Callable[..., MetricValue]) -> Callable[..., MetricValue]:
        text = inspect.cleandoc(doc or fn.__doc__ or "")
        METRICS.register(name)(Metric(name, direction, text, fn, tuple(requires), class_only, title, digits,
                                      order, progress))
        return fn

    return deco


@dataclass
class MetricContext:
    """Everything a metric may read for one model in one cell.

    Attributes:
        outputs: The evaluated model's outputs per split.
        forget_classes: The forgotten classes in the class scenario, else ``None``.
        num_classes: Number of classes of the dataset.
        reference_outputs: Retrain oracles of the *other* seeds, on the same
            examples in the same order (RMIA reference models); may be empty.
        mia_shadow_max: Cap on each side of the MIA-efficacy shadow set.
        seed: Seeds every sample drawn by a metric (each metric its own stream).
        rmia_offline_a: RMIA's offline coefficient a (Zarifzadeh et al., 2024).
        rmia_gamma: RMIA's likelihood-ratio threshold gamma.
        oracle_values: The retrain oracle's own metric values (for gaps), or None.
        weights: ``{"model", "original", "oracle"}`` -> trainable state dicts, or None.
        timings: Wall seconds by key (``unlearn_s``, ``oracle_train_s``, ``eval_s``, ...).
        curves: Attacker -> this model's relearning curve (``benchmark.callbacks.relearn.Curve``).
        oracle_curves: Attacker -> the oracle's curve.
        levels: The relearning levels (``Levels``) of the group.
        population: ``{"forget"|"retain": (unlearned [K, M], oracles [K, M])}`` logit-scaled
            confidences of a population of models on a fixed set of examples (``eval.population``).
        near_classes: Class scenario: the remaining classes nearest the forgotten ones (by the
            original's mean softmax on the forgotten classes' test images), for over-unlearning.
        rmia_undefined: Why RMIA has no references here (the forget set differs between seeds).
        samples: A generator's scored samples (``benchmark.generative.evaluation.SampleEval``),
            task=generate; a generator has no classifier ``outputs`` (an empty mapping).
    """

    outputs: ModelOutputs
    forget_classes: list[int] | None
    num_classes: int
    reference_outputs: list[ModelOutputs] = field(default_factory=list)
    mia_shadow_max: int = 10000
    seed: int = 0
    rmia_offline_a: float = 0.3
    rmia_gamma: float = 1.0
    oracle_values: Mapping[str, Any] | None = None
    weights: Mapping[str, Mapping[str, Any]] | None = None
    timings: Mapping[str, float | None] | None = None
    curves: Mapping[str, Any] | None = None
    oracle_curves: Mapping[str, Any] | None = None
    levels: Any = None
    population: Mapping[str, Any] | None = None
    near_classes: list[int] | None = None
    rmia_undefined: str | None = None
    samples: Any = None
    values: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise BenchmarkError(f"num_classes must be >= 1, got {self.num_classes}")
        for split, so in self.outputs.items():
            if so.n and so.num_classes != self.num_classes:
                raise BenchmarkError(f"outputs[{split!r}] has {so.num_classes} logits, expected {self.num_classes}")
        if self.forget_classes is not None:
            bad = [c for c in self.forget_classes if not 0 <= int(c) < self.num_classes]
            if bad or not self.forget_classes:
                raise BenchmarkError(f"forget_classes must be a non-empty list of classes in "
                                     f"[0, {self.num_classes}), got {self.forget_classes}")
        if self.mia_shadow_max < 1:
            raise BenchmarkError(f"mia_shadow_max must be >= 1, got {self.mia_shadow_max}")
        if not 0.0 <= self.rmia_offline_a <= 1.0:
            raise BenchmarkError(f"rmia_offline_a must lie in [0, 1], got {self.rmia_offline_a}")
        if self.rmia_gamma <= 0:
            raise BenchmarkError(f"rmia_gamma must be > 0, got {self.rmia_gamma}")

    def has(self, requirement: str) -> bool:
        """Whether this context holds what a metric ``requires``."""
        return {"outputs": bool(self.outputs), "references": True, "oracle": self.oracle_values is not None,
                "weights": self.weights is not None, "timings": self.timings is not None,
                "curves": bool(self.curves) and self.levels is not None,
                "population": bool(self.population), "samples": self.samples is not None}[requirement]

    def attackers(self) -> list[str]:
        return list(self.curves or {})

    def split(self, name: str) -> SplitOutputs | Undefined:
        """The outputs of one split, or :class:`Undefined` when it was not evaluated."""
        so = self.outputs.get(name)
        if so is None:
            return Undefined(f"no {name!r} split in the model's outputs")
        return so

    def rng(self, tag: str) -> np.random.Generator:
        """A generator that depends only on ``seed`` and ``tag`` (not on evaluation order)."""
        tag_int = int.from_bytes(hashlib.sha256(tag.encode()).digest()[:8], "little")
        return np.random.default_rng([self.seed & 0xFFFFFFFFFFFFFFFF, tag_int])

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """Computes a value shared by several metrics once per context."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]


def _ordered() -> list[Metric]:
    """Registered metrics, those that read other metrics' values (oracle gaps) last."""
    return sorted((m for _, m in METRICS.items()), key=lambda m: "oracle" in m.requires)


def compute_metrics(ctx: MetricContext, names: Sequence[str] | None = None
                    ) -> tuple[dict[str, float | int | None], dict[str, str]]:
    """Evaluates registered metrics on one model's cached outputs (and whatever else ``ctx`` holds).

    Args:
        ctx: The model's outputs, the scenario, and optionally the oracle's values,
            the weights, the timings and the relearning curves.
        names: Metric names (registry names, templates included) to compute; default
            every metric whose requirements ``ctx`` holds (the class-only ones only in
            the class scenario). An unknown name raises :class:`BenchmarkError`.

    Returns:
        ``(values, reasons)``: every computed key maps to a finite number or ``None``;
        ``reasons`` explains each ``None`` (and notes caveats).
    """
    if names is None:
        chosen = [m for m in _ordered() if all(ctx.has(r) for r in m.requires)
                  and not (m.class_only and ctx.forget_classes is None)]
    else:
        chosen = sorted((METRICS.get(n) for n in names), key=lambda m: "oracle" in m.requires)
    raw: dict[str, MetricValue] = {}
    for metric in chosen:
        if metric.per_attacker:
            for a in ctx.attackers():
                raw[metric.name.format(attacker=a)] = metric.fn(ctx, a)
        elif metric.class_only and ctx.forget_classes is None:
            raw[metric.name] = Undefined("only defined in the class-forgetting scenario")
        else:
            raw[metric.name] = metric.fn(ctx)
        ctx.values.update(raw)
    return split_values(raw)


def metric_directions(attackers: Sequence[str] = ("sgd", "adam")) -> dict[str, str]:
    """Record key -> direction, for every registered metric (templates expanded per attacker)."""
    return {k: m.direction for _, m in METRICS.items() for k in m.keys(attackers)}


def metric_docs(attackers: Sequence[str] | None = ("sgd", "adam")) -> dict[str, str]:
    """Record key (or template, when ``attackers`` is None) -> one-line definition."""
    if attackers is None:
        return {m.name: m.summary for _, m in METRICS.items()}
    return {k: m.summary for _, m in METRICS.items() for k in m.keys(attackers)}


@dataclass(frozen=True)
class Column:
    """A table column: record key, title, decimals, direction."""

    key: str
    title: str
    digits: int
    direction: str


def table_columns(attackers: Sequence[str] = ("sgd", "adam")) -> list[Column]:
    """The columns every table (printed, summary, leaderboard, W&B) shows, in order."""
    cols = []
    for m in sorted((m for _, m in METRICS.items() if m.title), key=lambda m: (m.order, m.name)):
        for k, a in zip(m.keys(attackers), attackers if m.per_attacker else [None], strict=False):
            cols.append(Column(k, m.title.format(attacker=a) if a else m.title, m.digits, m.direction))
    return cols


def progress_keys(attackers: Sequence[str] = ("sgd", "adam")) -> list[Column]:
    """The columns of the per-cell progress line."""
    return [c for c in table_columns(attackers) if METRICS.get(_template(c.key)).progress]


def _template(key: str) -> str:
    parts = key.split("/")
    if key in METRICS:
        return key
    if len(parts) == 3 and parts[0] == "relearn":
        return f"relearn/{ATTACKER}/{parts[2]}"
    return key
