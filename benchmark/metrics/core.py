"""The metric registry, the undefined-value type and the evaluation context.

A metric is a registered :class:`Metric` whose ``fn`` maps a :class:`MetricContext`
(one model's cached outputs plus the scenario) to a number or to
:class:`Undefined` with a reason. :func:`compute_metrics` evaluates a set of them
and returns record-ready ``(values, reasons)``; no metric can put a NaN in a record.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from benchmark.errors import BenchmarkError
from benchmark.registry import Registry

if TYPE_CHECKING:
    from benchmark.metrics.outputs import ModelOutputs, SplitOutputs

#: "higher"/"lower": that way is better. "oracle": closer to the retrain oracle's
#: value is better. "info": not a score (a sample size, a distance with no target).
DIRECTIONS: tuple[str, ...] = ("higher", "lower", "oracle", "info")


@dataclass(frozen=True)
class Undefined:
    """A metric value that does not exist, with the reason why.

    It is falsy, never equal to a number, and refuses ``float()`` so that it
    cannot turn into a NaN unnoticed. In a record it is written as ``None`` with
    its reason next to it (see :func:`split_values`).
    """

    reason: str

    def __bool__(self) -> bool:
        return False

    def __float__(self) -> float:
        raise TypeError(f"undefined metric value: {self.reason}")

    def to_json(self) -> dict[str, str | None]:
        """``{"value": None, "reason": ...}``."""
        return {"value": None, "reason": self.reason}


class NotedFloat(float):
    """A defined value that comes with a caveat (for example, an average over fewer terms).

    Behaves as a plain ``float`` (and serialises as one); :func:`split_values`
    moves the note into the record's reasons.
    """

    note: str

    def __new__(cls, value: float, note: str) -> NotedFloat:
        obj = super().__new__(cls, value)
        obj.note = note
        return obj


MetricValue: TypeAlias = "float | int | Undefined"


def is_defined(value: Any) -> bool:
    """True for a finite number; False for ``None``, :class:`Undefined`, NaN and inf."""
    if value is None or isinstance(value, Undefined | bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    Attributes:
        name: The record key, ``phase/split/metric`` (e.g. ``eval/forget/acc``).
        direction: One of :data:`DIRECTIONS`.
        doc: The definition (the function's docstring).
        fn: ``fn(ctx) -> float | Undefined``.
        class_only: Only defined in the class-forgetting scenario; left out of the
            default set of :func:`compute_metrics` in the other scenarios.
    """

    name: str
    direction: str
    doc: str
    fn: Callable[[MetricContext], MetricValue]
    class_only: bool = False

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise BenchmarkError(
                f"metric {self.name!r}: direction {self.direction!r} not in {DIRECTIONS}"
            )

    @property
    def summary(self) -> str:
        """The first line of the definition."""
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""

    def __call__(self, ctx: MetricContext) -> MetricValue:
        return self.fn(ctx)


METRICS: Registry[Metric] = Registry("metric")


def register_metric(
    name: str, direction: str, *, class_only: bool = False
) -> Callable[[Callable[[MetricContext], MetricValue]], Callable[[MetricContext], MetricValue]]:
    """Decorator registering ``fn(ctx)`` as the metric ``name``; its docstring is the definition."""

    def deco(fn: Callable[[MetricContext], MetricValue]) -> Callable[[MetricContext], MetricValue]:
        doc = inspect.cleandoc(fn.__doc__ or "")
        METRICS.register(name)(Metric(name, direction, doc, fn, class_only))
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
    """

    outputs: ModelOutputs
    forget_classes: list[int] | None
    num_classes: int
    reference_outputs: list[ModelOutputs] = field(default_factory=list)
    mia_shadow_max: int = 5000
    seed: int = 0
    rmia_offline_a: float = 0.3
    rmia_gamma: float = 1.0
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise BenchmarkError(f"num_classes must be >= 1, got {self.num_classes}")
        for split, so in self.outputs.items():
            if so.n and so.num_classes != self.num_classes:
                raise BenchmarkError(
                    f"outputs[{split!r}] has {so.num_classes} logits, expected {self.num_classes}"
                )
        if self.forget_classes is not None:
            bad = [c for c in self.forget_classes if not 0 <= int(c) < self.num_classes]
            if bad or not self.forget_classes:
                raise BenchmarkError(
                    f"forget_classes must be a non-empty list of classes in "
                    f"[0, {self.num_classes}), got {self.forget_classes}"
                )
        if self.mia_shadow_max < 1:
            raise BenchmarkError(f"mia_shadow_max must be >= 1, got {self.mia_shadow_max}")
        if not 0.0 <= self.rmia_offline_a <= 1.0:
            raise BenchmarkError(f"rmia_offline_a must lie in [0, 1], got {self.rmia_offline_a}")
        if self.rmia_gamma <= 0:
            raise BenchmarkError(f"rmia_gamma must be > 0, got {self.rmia_gamma}")

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


def split_values(
    raw: Mapping[str, MetricValue | None],
) -> tuple[dict[str, float | int | None], dict[str, str]]:
    """Turns metric values into record form: ``(values, reasons)``.

    :class:`Undefined` becomes ``None`` with its reason; a :class:`NotedFloat`
    becomes a plain float with its note as the reason; a bare ``None`` gets the
    reason ``"no value"``. A NaN or inf is turned into ``None`` with a reason
    saying so, so a record never holds a non-finite number.
    """
    values: dict[str, float | int | None] = {}
    reasons: dict[str, str] = {}
    for key, v in raw.items():
        if isinstance(v, Undefined):
            values[key], reasons[key] = None, v.reason
        elif v is None:
            values[key], reasons[key] = None, "no value"
        elif isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
            raise BenchmarkError(f"metric {key!r} returned {type(v).__name__}, expected a number")
        elif not math.isfinite(float(v)):
            values[key] = None
            reasons[key] = f"evaluated to {float(v)} (non-finite; reported as undefined)"
        else:
            values[key] = int(v) if isinstance(v, int | np.integer) else float(v)
            if isinstance(v, NotedFloat):
                reasons[key] = v.note
    return values, reasons


def compute_metrics(
    ctx: MetricContext, names: Sequence[str] | None = None
) -> tuple[dict[str, float | int | None], dict[str, str]]:
    """Evaluates registered metrics on one model's cached outputs.

    Args:
        ctx: The model's outputs and the scenario.
        names: Record keys to compute; default all registered metrics (the
            class-only ones only in the class scenario). An unknown name raises
            :class:`BenchmarkError` with a did-you-mean hint.

    Returns:
        ``(values, reasons)``: every requested key maps to a finite number or
        ``None``; ``reasons`` explains each ``None`` (and notes caveats).
    """
    if names is None:
        names = [
            name for name, m in METRICS.items() if not (m.class_only and ctx.forget_classes is None)
        ]
    raw: dict[str, MetricValue] = {}
    for name in names:
        metric = METRICS.get(name)
        if metric.class_only and ctx.forget_classes is None:
            raw[name] = Undefined("only defined in the class-forgetting scenario")
        else:
            raw[name] = metric(ctx)
    return split_values(raw)
