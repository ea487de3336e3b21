"""The one grouping of results: records -> a table -> one row per method variant.

Every consumer (the printed table, ``summary.json``, ``leaderboard.md``/``.html``,
the figures and the W&B leaderboard) reads :func:`load_table` and
:func:`summarize_rows`, so they agree on what is pooled. The grouping key is
(dataset, model, scenario, ratio, setting, method, variant), realised as
``(table_key, row_key)``: records with equal ``row_key`` are the seeds of one row,
and records with different ``row_key`` never share a row.

Records written before these keys existed get fallbacks: ``row_key`` from
(dataset, model, scenario, ratio, method, ``config.cell.method_args``) and
``table_key`` from (dataset, model, scenario, ratio), so different method
arguments are never pooled either.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.metrics import summarize
from benchmark.results.store import ReadResult, read_records

METRIC = "m:"  # prefix of the metric columns of load_table
STATS = ("mean", "std", "ci_low", "ci_high", "half_width", "n", "n_missing")
#: The identity columns of a row, in sort order.
IDENTITY = ["table_key", "row_key", "dataset", "model", "scenario", "ratio", "method", "variant", "label"]
BASE = [*IDENTITY, "cell_id", "config_id", "status", "seed", "time", "stale", "record"]

Source = str | Path | ReadResult | Iterable[Mapping[str, Any]] | pd.DataFrame


def _hash(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def method_args(record: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved method arguments: ``hparams``, else ``config.cell.method_args``."""
    if isinstance(record.get("hparams"), dict):
        return record["hparams"]
    cell = (record.get("config") or {}).get("cell")
    args = cell.get("method_args") if isinstance(cell, dict) else None
    return args if isinstance(args, dict) else {}


TUNED_SUFFIX = " [tuned]"


def row_label(method: str, variant: str, source: str | None = None) -> str:
    """``method`` at its defaults, ``method{variant}`` otherwise; `` [tuned]`` appended for a row
    whose hyperparameters come from a tuned file (``hparams_source: tuned``)."""
    label = f"{method}{{{variant}}}" if variant else method
    return label + (TUNED_SUFFIX if source == "tuned" else "")


def _short(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list)) else str(v)


def _legacy_variants(records: list[Mapping[str, Any]], table_keys: list[str]) -> list[str]:
    """Variant labels for records without ``variant``: the method arguments that differ
    between the variants of one method in one table ("" where a method has one variant)."""
    args_of: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for r, tk in zip(records, table_keys, strict=True):
        if "variant" not in r:
            args_of[(tk, r.get("method"))][json.dumps(method_args(r), sort_keys=True, default=str)] = method_args(r)
    out = []
    for r, tk in zip(records, table_keys, strict=True):
        if "variant" in r:
            out.append(str(r.get("variant") or ""))
            continue
        variants = list(args_of[(tk, r.get("method"))].values())
        keys = sorted({k for v in variants for k in v})
        differing = [k for k in keys if len({_short(v.get(k, "\0missing")) for v in variants}) > 1]
        mine = method_args(r)
        out.append(",".join(f"{k}={_short(mine[k])}" for k in differing if k in mine) if len(variants) > 1 else "")
    return out


def _number(v: Any, missing: float = math.nan) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return missing


def _records(source: Source) -> list[dict[str, Any]]:
    if isinstance(source, (str, Path)):
        source = read_records(source)
    if isinstance(source, ReadResult):
        return list(source.records)
    # records handed over in memory: one per cell_id too, the newest (as read_records keeps)
    out: dict[str, dict[str, Any]] = {}
    for r in source:
        if isinstance(r, Mapping) and isinstance(r.get("cell_id"), str):
            old = out.get(r["cell_id"])
            if old is None or _number(r.get("time"), -math.inf) >= _number(old.get("time"), -math.inf):
                out[r["cell_id"]] = dict(r)
    return list(out.values())


def load_table(source: Source, current_fingerprints: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per record, with the grouping key and the metrics flattened.

    Args:
        source: An output directory, a :class:`ReadResult`, or records (one per
            ``cell_id`` is kept, the newest); a frame of this function is returned as it is.
        current_fingerprints: method -> the code fingerprint of the method as it is
            now; a record of such a method made with another (or no) fingerprint is stale.

    Returns:
        Columns ``table_key``, ``row_key``, ``dataset``, ``model``, ``scenario``,
        ``ratio`` (None for no ratio), ``method``, ``variant``, ``label``, ``cell_id``,
        ``config_id``, ``status``, ``seed``, ``time``, ``stale`` (bool), ``record`` (the
        record itself) and ``m:<key>`` per metric key (NaN where missing or undefined).
        A record is stale when a newer record with the same ``config_id`` (or, for
        records without one, the same row and seed) has another ``cell_id``, or when
        ``current_fingerprints`` names its method with another fingerprint.
    """
    if isinstance(source, pd.DataFrame):
        return source
    records = _records(source)
    table_keys = [str(r.get("table_key") or _hash(r.get("dataset"), r.get("model"), r.get("scenario"),
                                                   r.get("ratio"))) for r in records]
    variants = _legacy_variants(records, table_keys)
    rows = []
    for r, tk, variant in zip(records, table_keys, variants, strict=True):
        row_key = r.get("row_key") or _hash(r.get("dataset"), r.get("model"), r.get("scenario"), r.get("ratio"),
                                            r.get("method"), method_args(r))
        rows.append({"table_key": tk, "row_key": str(row_key), "dataset": str(r.get("dataset", "?")),
                     "model": str(r.get("model", "?")), "scenario": str(r.get("scenario", "?")),
                     "method": str(r.get("method", "?")), "variant": variant,
                     "cell_id": str(r["cell_id"]), "config_id": r.get("config_id"),
                     "status": str(r.get("status", "?")), "time": _number(r.get("time"))})
    df = pd.DataFrame(rows, columns=[c for c in BASE if c not in ("ratio", "seed", "label", "stale", "record")])
    # object columns, so a missing ratio or seed stays None (not NaN) and ints stay ints
    df["ratio"] = pd.Series([r.get("ratio") for r in records], dtype=object)
    df["seed"] = pd.Series([r.get("seed") for r in records], dtype=object)
    df["record"] = pd.Series(records, dtype=object)
    df["label"] = _unique_labels(df)
    df["stale"] = _stale(df, current_fingerprints)
    keys = sorted({k for r in records for k in (r.get("metrics") or {})})
    metrics = pd.DataFrame({METRIC + k: [_number((r.get("metrics") or {}).get(k)) for r in records] for k in keys},
                           index=df.index, dtype=float)
    return pd.concat([df[BASE], metrics], axis=1)


def _unique_labels(df: pd.DataFrame) -> list[str]:
    """Row labels; two rows of one table that would read the same get their row_key appended."""
    labels = [row_label(m, v, rec.get("hparams_source"))
              for m, v, rec in zip(df["method"], df["variant"], df["record"], strict=True)]
    rows_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for tk, rk, label in zip(df["table_key"], df["row_key"], labels, strict=True):
        rows_of[(tk, label)].add(rk)
    return [label if len(rows_of[(tk, label)]) == 1 else f"{label}#{rk[:6]}"
            for tk, rk, label in zip(df["table_key"], df["row_key"], labels, strict=True)]


def _stale(df: pd.DataFrame, current: Mapping[str, str] | None) -> list[bool]:
    # the identity of the numbers: config_id, or for older records the row and the seed
    members: dict[tuple, list[int]] = defaultdict(list)
    for i, (cfg, rk, seed) in enumerate(zip(df["config_id"], df["row_key"], df["seed"], strict=True)):
        members[("config", cfg) if isinstance(cfg, str) and cfg else ("row", rk, json.dumps(seed))].append(i)
    when = [(-math.inf if math.isnan(t) else t, i) for i, t in enumerate(df["time"])]  # ties: the later one
    cells = list(df["cell_id"])
    out = [False] * len(df)
    for idx in members.values():
        for i in idx:
            out[i] = any(when[j] > when[i] and cells[j] != cells[i] for j in idx)
    if current:
        for i, (method, rec) in enumerate(zip(df["method"], df["record"], strict=True)):
            if method in current and (rec.get("code") or {}).get("fingerprint") != current[method]:
                out[i] = True
    return out


def metric_keys(df: pd.DataFrame) -> list[str]:
    """The metric keys present in a :func:`load_table` frame."""
    return [c[len(METRIC):] for c in df.columns if c.startswith(METRIC)]


def attackers(df: pd.DataFrame) -> list[str]:
    """The relearning attackers found in the metric keys (``relearn/<attacker>/...``), sgd and adam first."""
    found = {k.split("/")[1] for k in metric_keys(df) if k.startswith("relearn/") and k.count("/") == 2}
    return [a for a in ("sgd", "adam") if a in found] + sorted(found - {"sgd", "adam"})


def _ratio_sort(r: Any) -> float:
    return -1.0 if r is None or (isinstance(r, float) and math.isnan(r)) else float(r)


def table_order(df: pd.DataFrame) -> list[str]:
    """The table keys, sorted by dataset, model, scenario, ratio."""
    first = df.drop_duplicates("table_key")
    return [tk for *_, tk in sorted(zip(first["dataset"], first["model"], first["scenario"],
                                        map(_ratio_sort, first["ratio"]), first["table_key"], strict=True))]


def table_titles(df: pd.DataFrame) -> dict[str, str]:
    """table_key -> "dataset / model / scenario / ratio r"; tables that share all four
    get " / setting <first 6 of table_key>" (more characters where those coincide), so
    that no two titles are equal."""
    first = df.drop_duplicates("table_key")
    plain = {tk: f"{ds} / {model} / {scen}" + ("" if _ratio_sort(ratio) < 0 else f" / ratio {ratio}")
             for tk, ds, model, scen, ratio in zip(first["table_key"], first["dataset"], first["model"],
                                                   first["scenario"], first["ratio"], strict=True)}
    shared: dict[str, list[str]] = defaultdict(list)
    for tk, title in plain.items():
        shared[title].append(tk)
    out = {}
    for title, tks in shared.items():
        n = 6  # the first 6 characters of the table_key, more where those coincide
        while len({tk[:n] for tk in tks}) < len(tks):
            n += 1
        out.update({tk: title if len(tks) == 1 else f"{title} / setting {tk[:n]}" for tk in tks})
    return out


def _seed_order(seed: Any) -> tuple:
    number = isinstance(seed, (int, float)) and not isinstance(seed, bool)
    return (seed is None, not number, seed if number else str(seed))


def summarize_rows(df: pd.DataFrame, keys: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (table_key, row_key) over its ok, non-stale records.

    Args:
        df: A :func:`load_table` frame.
        keys: Metric keys to summarise (default: every metric key in ``df``).

    Returns:
        The identity columns, ``n`` (records pooled), ``seeds`` (sorted list),
        ``cell_ids`` and, per metric key, ``<key>:<stat>`` for each stat of
        :func:`benchmark.metrics.summarize` (mean, std, ci_low, ci_high, half_width,
        n, n_missing); :func:`metric_summary` reads one back as a dict. Rows are in
        table order, then by label.
    """
    keys = metric_keys(df) if keys is None else list(keys)
    ok = df[(df["status"] == "ok") & ~df["stale"].astype(bool)]
    order = {tk: i for i, tk in enumerate(table_order(df))}
    out = []
    for (tk, _), g in ok.groupby(["table_key", "row_key"], sort=False):
        g = g.iloc[sorted(range(len(g)), key=lambda i: _seed_order(g["seed"].iat[i]))]
        row = {c: g[c].iat[0] for c in IDENTITY}
        row.update(n=len(g), seeds=list(g["seed"]), cell_ids=list(g["cell_id"]))
        for k in keys:
            col = g.get(METRIC + k)
            values = [] if col is None else [None if math.isnan(v) else float(v) for v in col]
            for stat, v in summarize(values or [None] * len(g)).items():
                row[f"{k}:{stat}"] = v
        out.append((order[tk], row["label"], row))
    cols = [*IDENTITY, "n", "seeds", "cell_ids", *[f"{k}:{s}" for k in keys for s in STATS]]
    ordered = [row for *_, row in sorted(out, key=lambda x: (x[0], x[1]))]
    frame = pd.DataFrame(ordered, columns=cols)
    frame["ratio"] = pd.Series([row["ratio"] for row in ordered], dtype=object)  # None stays None
    return frame


def metric_summary(row: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The :func:`benchmark.metrics.summarize` dict of ``key`` in a :func:`summarize_rows` row
    (n = 0 where the row has no such column)."""
    if f"{key}:n" not in row:
        return {**dict.fromkeys(STATS[:5]), "n": 0, "n_missing": 0}
    out = {}
    for s in STATS:
        v = row[f"{key}:{s}"]
        out[s] = None if v is None or (isinstance(v, float) and math.isnan(v)) else v
    out["n"] = int(out["n"] or 0)
    out["n_missing"] = int(out["n_missing"] or 0)
    return out
