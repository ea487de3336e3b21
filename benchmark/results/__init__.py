"""The results layer: the record file and the one grouping that every report reads.

``results.jsonl`` holds one JSON object a line, one per cell: ``cell_id``,
``config_id`` (hash of everything that determines the numbers except the code;
``cell_id`` adds the method's code fingerprint), ``row_key`` (the identity without
the seed: equal ``row_key`` = seeds of one row), ``table_key`` (without the seed
and the method: one table), ``dataset``, ``model``, ``method``, ``variant`` (the
method arguments that differ from its defaults, "" at defaults), ``hparams``,
``hparams_source``, ``scenario``, ``ratio``, ``seed``, ``status`` (ok, failed or
skipped), ``error``, ``metrics`` ({key: number or null}), ``undefined`` ({key:
reason}), ``directions``, ``warnings``, ``config``, ``code`` ({"fingerprint", ...}),
``time``, ``git``, ``versions``, ``protocol_version`` and ``split_hash``.

- :mod:`benchmark.results.store`: :func:`read_records` (defensive),
  :func:`append_record` (locked, atomic), curve files, provenance helpers.
- :mod:`benchmark.results.table`: :func:`load_table` (one row per record) and
  :func:`summarize_rows` (one row per (table_key, row_key), mean and 95% interval).
"""

from pathlib import Path
from typing import Any

from benchmark.results.store import (
    RESULTS,
    ReadResult,
    append_record,
    check_writable,
    curves_path,
    git_revision,
    load_curves,
    load_population,
    package_versions,
    population_path,
    read_records,
)
from benchmark.results.table import (
    attackers,
    load_table,
    metric_keys,
    metric_summary,
    row_label,
    summarize_rows,
    table_order,
    table_titles,
)


# ---- compatibility for tests/test_bench.py and tests/test_sweep.py until they call read_records (to be removed)
def read_results(output_dir: str | Path) -> list[dict[str, Any]]:
    """Deprecated: ``read_records(output_dir).records``."""
    return read_records(output_dir).records


__all__ = [
    "RESULTS",
    "ReadResult",
    "append_record",
    "attackers",
    "check_writable",
    "curves_path",
    "load_population",
    "population_path",
    "git_revision",
    "load_curves",
    "load_table",
    "metric_keys",
    "metric_summary",
    "package_versions",
    "read_records",
    "read_results",
    "row_label",
    "summarize_rows",
    "table_order",
    "table_titles",
]
