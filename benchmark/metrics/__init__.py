"""Metrics (docs/protocol.md, "Metrics"): one registry for every number the suite reports.

Importing this package registers every metric in :data:`METRICS`: accuracies and MIAs
over cached per-example outputs, gaps to the oracle, cost, weight distances and the
relearning metrics (per attacker). Nothing here runs a model.

Typical use::

    ctx = MetricContext(outputs, forget_classes=None, num_classes=10, seed=seed,
                        oracle_values=oracle_values, weights=..., timings=..., curves=..., levels=...)
    values, reasons = compute_metrics(ctx)      # every metric whose requirements ctx holds
"""

from benchmark.metrics import accuracy, derived, generative, mia, population, relearn  # noqa: F401  (registers the metrics)
from benchmark.metrics.core import (
    DIRECTIONS,
    METRICS,
    Column,
    Metric,
    MetricContext,
    compute_metrics,
    metric_directions,
    metric_docs,
    progress_keys,
    register_metric,
    table_columns,
)
from benchmark.metrics.derived import gap_metrics, time_metrics, weight_distance
from benchmark.metrics.mia import balanced_sample, loss_mia_accuracy, rmia_scores, svc_mia_efficacy
from benchmark.metrics.outputs import SPLITS, ModelOutputs, SplitOutputs, load_outputs, save_outputs
from benchmark.metrics.summary import format_cell, summarize, t_critical
from benchmark.metrics.values import NotedFloat, Undefined, is_defined, split_values

__all__ = [
    "DIRECTIONS",
    "METRICS",
    "SPLITS",
    "Column",
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
    "progress_keys",
    "register_metric",
    "rmia_scores",
    "save_outputs",
    "split_values",
    "summarize",
    "svc_mia_efficacy",
    "t_critical",
    "table_columns",
    "time_metrics",
    "weight_distance",
]
