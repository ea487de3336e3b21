"""Accuracy metrics: per-split accuracy, UA, RA, TA (docs/protocol.md section 3)."""

from __future__ import annotations

import numpy as np

from benchmark.metrics.core import MetricContext, register_metric
from benchmark.metrics.outputs import SplitOutputs
from benchmark.metrics.values import Undefined


def split_accuracy(ctx: MetricContext, split: str) -> float | Undefined:
    """Top-1 accuracy (percent) of one split, or :class:`Undefined` naming the split."""
    return _subset_accuracy(ctx.split(split), split)


def _test_by_class(ctx: MetricContext, forgotten: bool) -> SplitOutputs | Undefined:
    """The test examples of the forgotten (or of the remaining) classes."""
    test = ctx.split("test")
    if isinstance(test, Undefined):
        return test
    assert ctx.forget_classes is not None
    in_forgotten = np.isin(test.labels, np.asarray(ctx.forget_classes, dtype=np.int64))
    return test.subset(in_forgotten if forgotten else ~in_forgotten)


def _subset_accuracy(part: SplitOutputs | Undefined, what: str) -> float | Undefined:
    if isinstance(part, Undefined):
        return part
    acc = part.accuracy
    if isinstance(acc, Undefined):
        return Undefined(f"{what} accuracy: {acc.reason}")
    return acc


@register_metric("eval/forget/acc", "oracle")
def forget_acc(ctx: MetricContext) -> float | Undefined:
    """Top-1 accuracy on the forget set D_f, in percent."""
    return split_accuracy(ctx, "forget")


@register_metric("eval/retain/acc", "higher")
def retain_acc(ctx: MetricContext) -> float | Undefined:
    """Top-1 accuracy on the retain set D_r, in percent."""
    return split_accuracy(ctx, "retain")


@register_metric("eval/val/acc", "higher")
def val_acc(ctx: MetricContext) -> float | Undefined:
    """Top-1 accuracy on the validation split D_val (for tuning only), in percent."""
    return split_accuracy(ctx, "val")


@register_metric("eval/test/acc", "oracle")
def test_acc(ctx: MetricContext) -> float | Undefined:
    """Top-1 accuracy on the whole test set D_test (all classes), in percent.

    Direction "oracle": in the class scenario it mixes forgotten and remaining
    classes, so higher is not better; ``eval/ta`` is the headline test metric.
    """
    return split_accuracy(ctx, "test")


@register_metric("eval/ua", "oracle", title="UA", order=10, progress=True)
def unlearning_accuracy(ctx: MetricContext) -> float | Undefined:
    """UA = 100 - accuracy on D_f (percent); the oracle's value is the target."""
    acc = split_accuracy(ctx, "forget")
    return acc if isinstance(acc, Undefined) else 100.0 - acc


@register_metric("eval/ra", "higher", title="RA", order=11, progress=True)
def remaining_accuracy(ctx: MetricContext) -> float | Undefined:
    """RA = accuracy on D_r (percent)."""
    return split_accuracy(ctx, "retain")


@register_metric("eval/ta", "higher", title="TA", order=12, progress=True)
def test_accuracy(ctx: MetricContext) -> float | Undefined:
    """TA = accuracy on D_test (percent); class scenario: on the remaining classes only."""
    if ctx.forget_classes is None:
        return split_accuracy(ctx, "test")
    return _subset_accuracy(_test_by_class(ctx, forgotten=False), "test (remaining classes)")


@register_metric("eval/test_forgotten/acc", "oracle", class_only=True, title="TA_forgot", order=13)
def test_forgotten_acc(ctx: MetricContext) -> float | Undefined:
    """Class scenario: accuracy on the test examples of the forgotten classes (percent)."""
    return _subset_accuracy(_test_by_class(ctx, forgotten=True), "test (forgotten classes)")


@register_metric("eval/test_remaining/acc", "higher", class_only=True)
def test_remaining_acc(ctx: MetricContext) -> float | Undefined:
    """Class scenario: accuracy on the test examples of the remaining classes (percent; = TA)."""
    return _subset_accuracy(_test_by_class(ctx, forgotten=False), "test (remaining classes)")


@register_metric("eval/test_near/acc", "higher", class_only=True)
def test_near_acc(ctx: MetricContext) -> float | Undefined:
    """Class scenario: accuracy on the test examples of the remaining classes nearest the forgotten ones
    (the two with the highest mean softmax of the original on the forgotten classes' test images): where
    over-unlearning shows first (percent)."""
    if not ctx.near_classes:
        return Undefined("no nearest classes were determined for this group")
    test = ctx.split("test")
    if isinstance(test, Undefined):
        return test
    return _subset_accuracy(test.subset(np.isin(test.labels, np.asarray(ctx.near_classes, dtype=np.int64))),
                            "test (nearest classes)")
