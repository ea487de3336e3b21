"""Metrics over cached per-example outputs (PROTOCOL.md section 3).

Importing this package registers every metric in :data:`METRICS`. Each metric is a
pure function of numpy arrays (logits, labels, losses) computed once per model;
nothing here runs a model.

Typical use::

    ctx = MetricContext(outputs, forget_classes=None, num_classes=10,
                        reference_outputs=other_seed_oracles, seed=seed)
    values, reasons = compute_metrics(ctx)
    gaps = gap_metrics(values, oracle_values)          # float | Undefined per key
    values_g, reasons_g = split_values(gaps)            # record form
"""

from benchmark.metrics import accuracy, mia  # noqa: F401  (registers the metrics)
from benchmark.metrics.core import (
    DIRECTIONS,
    METRICS,
    Metric,
    MetricContext,
    NotedFloat,
    Undefined,
    compute_metrics,
    is_defined,
    register_metric,
    split_values,
)
from benchmark.metrics.derived import (
    gap_metrics,
    metric_directions,
    metric_docs,
    time_metrics,
    weight_distance,
)
from benchmark.metrics.mia import balanced_sample, loss_mia_accuracy, rmia_scores, svc_mia_efficacy
from benchmark.metrics.outputs import SPLITS, ModelOutputs, SplitOutputs, load_outputs, save_outputs
from benchmark.metrics.summary import format_cell, summarize, t_critical

__all__ = [
    "DIRECTIONS",
    "METRICS",
    "SPLITS",
    "Metric",
    "MetricContext",
    "ModelOutputs",
    "NotedFloat",
    "SplitOutputs",
    "Undefined",
    "balanced_sample",
    "compute_metrics",
    "format_cell",
    "gap_metrics",
    "is_defined",
    "load_outputs",
    "loss_mia_accuracy",
    "metric_directions",
    "metric_docs",
    "register_metric",
    "rmia_scores",
    "save_outputs",
    "split_values",
    "summarize",
    "svc_mia_efficacy",
    "t_critical",
    "time_metrics",
    "weight_distance",
]
