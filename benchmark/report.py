"""Tables with 95% intervals over seeds, built from result records alone.

The runner prints :func:`format_table` and writes :func:`write_summary` after a sweep;
``python -m benchmark report OUT`` calls :func:`write_leaderboard`, which reads only
``OUT/results.jsonl`` and ``OUT/curves/*.json`` and writes ``leaderboard.md``, a
self-contained ``leaderboard.html`` and PNG figures under ``OUT/figures/``.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

from benchmark.metrics import format_cell, summarize

# (record key, column title) of the printed table; columns with no value are dropped
COLUMNS = [
    ("eval/ua", "UA"), ("eval/ra", "RA"), ("eval/ta", "TA"), ("eval/test_forgotten/acc", "TA_forgot"),
    ("eval/mia/efficacy", "MIA-eff"), ("eval/mia/loss_acc", "Loss-MIA"), ("eval/mia/rmia_auc", "RMIA-AUC"),
    ("relearn/sgd/rcd", "RCD-sgd"), ("relearn/adam/rcd", "RCD-adam"),
    ("gap/avg", "AvgGap"), ("time/unlearn_s", "time_s"),
]
INTERVAL = "95% Student-t interval over seeds"


def group_summaries(records: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """{(dataset, scenario, ratio, method): {metric: summary, '_n': seeds}} over ok records."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r.get("status") == "ok":
            groups[(r["dataset"], r["scenario"], r["ratio"], r["method"])].append(r)
    out: dict[tuple, dict[str, Any]] = {}
    for key, rs in groups.items():
        keys = sorted({k for r in rs for k in r.get("metrics", {})})
        out[key] = {k: summarize([r["metrics"].get(k) for r in rs]) for k in keys}
        out[key]["_n"] = len(rs)
    return out


def format_table(records: list[dict[str, Any]], methods: list[str] | None = None) -> str:
    """One table per (dataset, scenario, ratio): method rows, mean ± CI half-width (n)."""
    rows = group_summaries(records)
    lines = []
    for ds, scen, ratio in sorted({k[:3] for k in rows}, key=lambda x: (x[0], x[1], x[2] or 0)):
        order = list(methods or []) + sorted({k[3] for k in rows} - set(methods or []))
        present = [m for m in order if (ds, scen, ratio, m) in rows]
        cols = [c for c in COLUMNS if any(rows[(ds, scen, ratio, m)].get(c[0], {}).get("n") for m in present)]
        lines.append(f"\n{ds} | scenario={scen} ratio={ratio} | mean ± half-width of the {INTERVAL}")
        body = {m: [format_cell(rows[(ds, scen, ratio, m)][k]) if k in rows[(ds, scen, ratio, m)] else "-"
                    for k, _ in cols] for m in present}
        # each column as wide as its widest cell, so long values never run together
        widths = [max([len(t)] + [len(body[m][i]) for m in present]) + 2 for i, (_, t) in enumerate(cols)]
        name_w = max([16] + [len(m) + 1 for m in present])
        header = f"{'method':<{name_w}}" + "".join(f"{t:>{w}}" for (_, t), w in zip(cols, widths, strict=True))
        lines += [header + f"{'n':>4}", "-" * (len(header) + 4)]
        for m in present:
            cells = "".join(f"{c:>{w}}" for c, w in zip(body[m], widths, strict=True))
            lines.append(f"{m:<{name_w}}" + cells + f"{rows[(ds, scen, ratio, m)]['_n']:>4}")
    failed = [r for r in records if r.get("status") == "failed"]
    if failed:
        lines.append(f"\n{len(failed)} failed cell(s): "
                     + "; ".join(f"{r['method']} seed={r['seed']}: {r.get('error')}" for r in failed[:5]))
    return "\n".join(lines)


def print_table(records: list[dict[str, Any]], methods: list[str] | None = None) -> str:
    text = format_table(records, methods)
    print(text, flush=True)
    return text


def write_summary(output_dir: str | Path, records: list[dict[str, Any]]) -> Path:
    """``summary.json``: per (dataset, scenario, ratio, method), every metric's mean, std,
    95% t-interval and n; written atomically."""
    rows = group_summaries(records)
    payload = {"interval": INTERVAL, "groups": [
        {"dataset": k[0], "scenario": k[1], "ratio": k[2], "method": k[3], "n": v["_n"],
         "metrics": {m: s for m, s in v.items() if m != "_n"}} for k, v in sorted(rows.items(), key=str)]}
    path = Path(output_dir) / "summary.json"
    tmp = path.with_name(f".summary.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------- leaderboard
# (record key, column title, digits) of the leaderboard, after rank and method; the RCD
# columns are inserted per attacker (sgd and adam first, any other attacker after them).
LEADERBOARD_COLUMNS = [("gap/avg", "Avg Gap", 2)]
LEADERBOARD_TAIL = [("eval/ra", "RA", 1), ("eval/ta", "TA", 1), ("eval/ua", "UA", 1),
                    ("eval/mia/efficacy", "MIA-efficacy", 1)]
ATTACKERS = ("sgd", "adam")
REFERENCE = "retrain"  # the oracle row: shown first as the reference, never ranked
MISSING = "-"
MAX_WARNINGS = 4  # distinct run warnings shown per group
LOWER_BOUND = "≥"  # an RCD mean over seeds of which at least one is censored at the attack budget


def _group_key(r: dict[str, Any]) -> tuple:
    return (str(r.get("dataset", "?")), str(r.get("model", "?")), str(r.get("scenario", "?")), r.get("ratio"))


def _sort_key(k: tuple) -> tuple:
    return (k[0], k[1], k[2], -1.0 if k[3] is None else float(k[3]))


def _method_args(r: dict[str, Any]) -> dict[str, Any]:
    cell = (r.get("config") or {}).get("cell") or {}
    return cell.get("method_args") or {}


def _labels(records: list[dict[str, Any]]) -> dict[str, str]:
    """cell_id -> row label: the method name, plus its arguments where one group ran the
    same method with different arguments (so such runs are never pooled as seeds)."""
    variants: dict[tuple, set[str]] = defaultdict(set)
    for r in records:
        variants[(*_group_key(r), r.get("method"))].add(json.dumps(_method_args(r), sort_keys=True, default=str))
    out = {}
    for r in records:
        label = str(r.get("method", "?"))
        if len(variants[(*_group_key(r), r.get("method"))]) > 1 and _method_args(r):
            label += "{" + ",".join(f"{k}={v}" for k, v in sorted(_method_args(r).items())) + "}"
        out[str(r.get("cell_id"))] = label
    return out


def _attackers(records: list[dict[str, Any]]) -> list[str]:
    found = {k.split("/")[1] for r in records for k in (r.get("metrics") or {}) if k.startswith("relearn/")
             and k.count("/") == 2}
    return [*ATTACKERS, *sorted(found - set(ATTACKERS))]


def _values(rs: list[dict[str, Any]], key: str) -> list[float | None]:
    out = []
    for r in rs:
        v = (r.get("metrics") or {}).get(key)
        out.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                   else None)
    return out


def _leaderboard_groups(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (dataset, model, scenario, ratio): ranked rows with summaries, plus the cells that
    did not finish. Each row: label, method, rank (None for the reference), n, seeds,
    summaries {key: summary}, censored {attacker: (k censored, n)}, cell records."""
    labels = _labels(records)
    attackers = _attackers(records)
    keys = [k for k, _, _ in LEADERBOARD_COLUMNS + LEADERBOARD_TAIL] + [f"relearn/{a}/rcd" for a in attackers]
    by_group: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        by_group[_group_key(r)].append(r)
    groups = []
    for gk in sorted(by_group, key=_sort_key):
        rs = by_group[gk]
        ok: dict[str, list[dict]] = defaultdict(list)
        for r in rs:
            if r.get("status") == "ok":
                ok[labels[str(r.get("cell_id"))]].append(r)
        rows = []
        for label, cells in ok.items():
            cells = sorted(cells, key=lambda r: (r.get("seed") is None, r.get("seed")))
            censored = {}
            for a in attackers:
                flags = [bool(v) for v, rcd in zip(_values(cells, f"relearn/{a}/censored"),
                                                   _values(cells, f"relearn/{a}/rcd"), strict=True) if rcd is not None]
                oracle = [bool(v) for v in _values(cells, f"relearn/{a}/oracle_censored") if v is not None]
                censored[a] = (sum(flags), len(flags), any(oracle))
            undefined = {}
            for r in cells:
                for k, why in (r.get("undefined") or {}).items():
                    if k in keys:
                        undefined.setdefault(k, str(why))
            rows.append({"label": label, "method": cells[0].get("method"), "n": len(cells),
                         "seeds": [r.get("seed") for r in cells], "cells": cells, "censored": censored,
                         "undefined": undefined, "summaries": {k: summarize(_values(cells, k)) for k in keys}})

        def gap_mean(row: dict) -> float:
            m = row["summaries"]["gap/avg"]["mean"]
            return math.inf if m is None else m

        ref = sorted((r for r in rows if r["method"] == REFERENCE), key=lambda r: r["label"])
        ranked = sorted((r for r in rows if r["method"] != REFERENCE), key=lambda r: (gap_mean(r), r["label"]))
        prev, rank = None, 0
        for i, row in enumerate(ranked, 1):
            g = gap_mean(row)
            if g == math.inf:
                row["rank"] = None  # no Avg Gap: listed last, unranked
                continue
            rank = rank if g == prev else i  # ties share a rank
            row["rank"], prev = rank, g
        for row in ref:
            row["rank"] = None
        not_ok = sorted((r for r in rs if r.get("status") != "ok"),
                        key=lambda r: (str(r.get("method")), r.get("seed") is None, r.get("seed")))
        seeds_of: dict[str, set] = defaultdict(set)
        for r in rs:
            if r.get("status") == "ok":
                for w in r.get("warnings") or []:
                    seeds_of[str(w)].add(r.get("seed"))
        warnings = [f"seed {', '.join(str(s) for s in sorted(seeds, key=str))}: {w}" for w, seeds in
                    sorted(seeds_of.items())]
        if len(warnings) > MAX_WARNINGS:
            warnings = [*warnings[:MAX_WARNINGS], f"... and {len(warnings) - MAX_WARNINGS} more (see results.jsonl)"]
        groups.append({"key": gk, "rows": ref + ranked, "not_ok": not_ok, "attackers": attackers,
                       "warnings": warnings, "seeds": sorted({r.get("seed") for r in rs if r.get("status") == "ok"},
                                                             key=lambda s: (s is None, s))})
    return groups


def _columns(attackers: list[str]) -> list[tuple[str, str, int]]:
    return LEADERBOARD_COLUMNS + [(f"relearn/{a}/rcd", f"RCD-{a}", 2) for a in attackers] + LEADERBOARD_TAIL


def _cell_text(row: dict[str, Any], key: str, digits: int) -> str:
    s = row["summaries"].get(key) or {}
    if not s.get("n") or s.get("mean") is None:
        return MISSING
    text = format_cell(s, digits)
    if key.startswith("relearn/") and key.endswith("/rcd"):
        k, _, _ = row["censored"].get(key.split("/")[1], (0, 0, False))
        if k:
            text = LOWER_BOUND + text
    return text


def _title(gk: tuple) -> str:
    ds, model, scen, ratio = gk
    return f"{ds} / {model} / {scen}" + ("" if ratio is None else f" / ratio {ratio}")


def _slug(gk: tuple) -> str:
    raw = "-".join(str(x) for x in gk)
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in raw)


def _interval_line(group: dict[str, Any]) -> str:
    ns = sorted({row["n"] for row in group["rows"]})
    seeds = ", ".join(str(s) for s in group["seeds"]) or "none"
    n_text = (f"n = {ns[0]} seeds" if len(ns) == 1 else f"n = {ns[0]}-{ns[-1]} seeds per method") if ns else "n = 0"
    return (f"Each cell: mean ± half-width of the 95% Student-t interval over seeds (t with n-1 degrees of "
            f"freedom × sample std / √n; `(n=1)` means a single seed, no interval); {n_text} (seeds {seeds}). "
            f"Ranked by mean Avg Gap, lower is better; `{REFERENCE}` is the oracle reference, not ranked.")


def _footnotes(group: dict[str, Any]) -> list[str]:
    notes = []
    for row in group["rows"]:
        for a, (k, n, oracle) in row["censored"].items():
            if k:
                notes.append(f"{LOWER_BOUND} {row['label']} RCD-{a}: {k} of {n} seed(s) never relearned within the "
                             "attack budget (T censored at max_steps), so the value is a lower bound.")
            if oracle and row["method"] != REFERENCE:
                notes.append(f"{row['label']} RCD-{a}: the oracle's own T was censored in some seed; the ratio "
                             "is not a bound either way.")
    reasons: dict[str, set[str]] = defaultdict(set)
    for row in group["rows"]:
        for key, why in row["undefined"].items():
            reasons[f"{key}: {why}"].add(row["label"])
    for text, labels in sorted(reasons.items()):
        notes.append(f"{MISSING} undefined {text} ({', '.join(sorted(labels))})")
    return notes


def _not_ok_line(r: dict[str, Any]) -> str:
    err = " ".join(str(r.get("error") or "no error recorded").split())
    return f"{r.get('status', '?')}: {r.get('method')} seed={r.get('seed')}: {err}"


def leaderboard_markdown(groups: list[dict[str, Any]], figures: dict[tuple, dict[str, str]] | None = None,
                         provenance: str = "") -> str:
    """The markdown leaderboard of :func:`write_leaderboard` (figures: group -> {name: relative path})."""
    lines = ["# Unlearning leaderboard", ""]
    if provenance:
        lines += [provenance, ""]
    for g in groups:
        cols = _columns(g["attackers"])
        lines += [f"## {_title(g['key'])}", "", _interval_line(g), ""]
        header = ["rank", "method", *[t for _, t, _ in cols], "n"]
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join(["---:", ":---"] + ["---:"] * (len(cols) + 1)) + "|"]
        for row in g["rows"]:
            rank = "ref" if row["method"] == REFERENCE else (str(row["rank"]) if row["rank"] else MISSING)
            label = f"**{row['label']}** (oracle)" if row["method"] == REFERENCE else row["label"]
            cells = [_cell_text(row, k, d) for k, _, d in cols]
            lines.append("| " + " | ".join([rank, label, *cells, str(row["n"])]) + " |")
        if not g["rows"]:
            lines.append("| - | (no finished cell) |" + " |" * (len(cols) + 1))
        notes = _footnotes(g)
        if notes:
            lines += [""] + [f"- {n}" for n in notes]
        if g["warnings"]:
            lines += [""] + [f"> warning: {w}" for w in g["warnings"]]
        if g["not_ok"]:
            lines += ["", f"Cells that did not finish ({len(g['not_ok'])}):", ""]
            lines += [f"- {_not_ok_line(r)}" for r in g["not_ok"]]
        for name, rel in (figures or {}).get(g["key"], {}).items():
            lines += ["", f"![{name}]({rel})"]
        lines.append("")
    return "\n".join(lines)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1320px;
color:#1d2330;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:34px 0 6px;border-bottom:1px solid #d6dbe3;padding-bottom:4px}
p.meta{color:#5a6475;margin:4px 0 10px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:6px 0}
th,td{padding:4px 10px;border-bottom:1px solid #e5e8ee;text-align:right;white-space:nowrap}
th{background:#f2f4f8;cursor:pointer;user-select:none;position:relative}
th:hover{background:#e3e8f1}th.asc::after{content:" \\25B2";font-size:10px}th.desc::after{content:" \\25BC";font-size:10px}
td.l,th.l{text-align:left}tr.ref td{background:#f7f5e8;font-style:italic}tbody tr:hover td{background:#eef3fb}
ul.notes{color:#4a5262;font-size:12.5px;margin:4px 0;padding-left:18px}
.warn{background:#fff4e0;border-left:4px solid #e0a030;padding:6px 10px;font-size:13px;margin:6px 0}
.fail{color:#9a2a2a;font-size:13px}
.figs{display:flex;flex-wrap:wrap;gap:12px;margin-top:10px;align-items:flex-start}
.figs figure{margin:0;border:1px solid #e5e8ee;padding:6px;max-width:100%;box-sizing:content-box}
.figs img{display:block;max-width:100%}
.figs figcaption{font-size:12px;color:#5a6475;padding:4px 2px 0}
nav a{margin-right:12px}
"""

_JS = """
// sort a table by clicking its header: numbers by their mean (data-v), text otherwise;
// the oracle reference row stays on top; a second click reverses the order.
document.querySelectorAll('table.lb').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = !th.classList.contains('asc');
      table.querySelectorAll('th').forEach(function (h) { h.classList.remove('asc', 'desc'); });
      th.classList.add(asc ? 'asc' : 'desc');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(tr) {
        var td = tr.cells[col], v = td.getAttribute('data-v');
        return v === null ? td.textContent.trim() : (v === '' ? null : parseFloat(v));
      }
      rows.sort(function (a, b) {
        var ra = a.classList.contains('ref'), rb = b.classList.contains('ref');
        if (ra !== rb) return ra ? -1 : 1;
        var x = key(a), y = key(b);
        if (x === null || y === null) return (x === null) - (y === null);  // missing values last
        var c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(function (tr) { body.appendChild(tr); });
    });
  });
});
"""


def leaderboard_html(groups: list[dict[str, Any]], figures: dict[tuple, dict[str, str]] | None = None,
                     provenance: str = "", embed_dir: Path | None = None) -> str:
    """The self-contained html leaderboard: sortable tables and figures. With ``embed_dir``
    the PNGs (paths relative to it) are embedded as base64; otherwise referenced relatively."""
    import base64
    from html import escape

    def width(rel: str) -> str:
        if embed_dir is None:
            return ""
        try:
            with open(embed_dir / rel, "rb") as fh:
                head = fh.read(24)  # PNG: 8-byte signature, IHDR length+type, then width (big-endian)
            return f' style="width:{int.from_bytes(head[16:20], "big")}px"' if head[:8] == b"\x89PNG\r\n\x1a\n" else ""
        except OSError:
            return ""

    def img(rel: str) -> str:
        if embed_dir is not None:
            try:
                data = base64.b64encode((embed_dir / rel).read_bytes()).decode("ascii")
                return f"data:image/png;base64,{data}"
            except OSError:
                pass
        return escape(rel)

    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>Unlearning leaderboard</title>", f"<style>{_CSS}</style></head><body>",
           "<h1>Unlearning leaderboard</h1>"]
    if provenance:
        out.append(f'<p class="meta">{escape(provenance)}</p>')
    if len(groups) > 1:
        out.append("<nav>" + "".join(f'<a href="#{_slug(g["key"])}">{escape(_title(g["key"]))}</a>'
                                     for g in groups) + "</nav>")
    captions = {"avg_gap": "Avg Gap per method, bars = mean, error bars = 95% t-interval over seeds "
                           "(lower is better; the oracle is 0 by definition)",
                "ra_rcd": "Retain accuracy vs relearning delay (SGD attacker); RCD = 1 is the oracle, "
                          "▷ = censored (lower bound)",
                "relearn": "Relearning curves: forget loss vs attack step, each seed faint, mean bold; "
                           "dotted red = target level L*"}
    for g in groups:
        cols = _columns(g["attackers"])
        out.append(f'<h2 id="{_slug(g["key"])}">{escape(_title(g["key"]))}</h2>')
        out.append(f'<p class="meta">{escape(_interval_line(g)).replace("`", "")}</p>')
        out.append('<table class="lb"><thead><tr><th>rank</th><th class="l">method</th>'
                   + "".join(f"<th>{escape(t)}</th>" for _, t, _ in cols) + "<th>n</th></tr></thead><tbody>")
        for row in g["rows"]:
            is_ref = row["method"] == REFERENCE
            rank = "ref" if is_ref else (str(row["rank"]) if row["rank"] else MISSING)
            rank_v = "" if row["rank"] is None else str(row["rank"])
            tds = [f'<td data-v="{"-1" if is_ref else rank_v}">{rank}</td>',
                   f'<td class="l">{escape(row["label"])}{" (oracle)" if is_ref else ""}</td>']
            for k, _, d in cols:
                s = row["summaries"].get(k) or {}
                v = "" if s.get("mean") is None else repr(float(s["mean"]))
                tds.append(f'<td data-v="{v}">{escape(_cell_text(row, k, d))}</td>')
            tds.append(f'<td data-v="{row["n"]}">{row["n"]}</td>')
            out.append(f'<tr{" class=ref" if is_ref else ""}>' + "".join(tds) + "</tr>")
        out.append("</tbody></table>")
        notes = _footnotes(g)
        if notes:
            out.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
        for w in g["warnings"]:
            out.append(f'<div class="warn">warning: {escape(w)}</div>')
        if g["not_ok"]:
            out.append(f'<p class="fail">Cells that did not finish ({len(g["not_ok"])}):</p><ul class="fail">'
                       + "".join(f"<li>{escape(_not_ok_line(r))}</li>" for r in g["not_ok"]) + "</ul>")
        figs = (figures or {}).get(g["key"], {})
        if figs:
            out.append('<div class="figs">' + "".join(
                f'<figure{width(rel)}><img src="{img(rel)}" alt="{escape(name)}"><figcaption>{escape(captions.get(name, name))}'
                f"</figcaption></figure>" for name, rel in figs.items()) + "</div>")
    out += [f"<script>{_JS}</script>", "</body></html>"]
    return "\n".join(out)


def _provenance(records: list[dict[str, Any]]) -> str:
    status = defaultdict(int)
    for r in records:
        status[str(r.get("status", "?"))] += 1
    protocols = sorted({str(r.get("protocol_version")) for r in records if r.get("protocol_version")})
    revs = sorted({str(r.get("git"))[:12] + ("-dirty" if str(r.get("git")).endswith("-dirty") else "")
                   for r in records if r.get("git")})
    parts = [f"{len(records)} result records (" + ", ".join(f"{v} {k}" for k, v in sorted(status.items())) + ")"]
    if protocols:
        parts.append("protocol " + ", ".join(protocols))
    if revs:
        parts.append("code " + ", ".join(revs[:3]) + (" ..." if len(revs) > 3 else ""))
    return "; ".join(parts) + "."


def write_leaderboard(output_dir: str | Path) -> list[Path]:
    """Writes ``leaderboard.md``, ``leaderboard.html`` and PNG figures under ``figures/``
    from ``<output_dir>/results.jsonl`` and the stored curves ``curves/<cell_id>.json``.

    Reads nothing else (no config, cache or model), so results copied from another
    machine report the same. Missing metrics show as ``-``; a missing curve file only
    drops that curve.

    Returns:
        The written paths: the markdown, the html, then the figures.

    Raises:
        BenchmarkError: There is no results.jsonl, or it holds no record.
    """
    from benchmark.errors import BenchmarkError
    from benchmark.results import RESULTS, atomic_write_text, read_results

    out = Path(output_dir)
    records = [r for r in read_results(out) if isinstance(r, dict) and r.get("cell_id") is not None]
    if not records:
        what = "is empty" if (out / RESULTS).exists() else "does not exist"
        raise BenchmarkError(f"{out / RESULTS} {what}; run `python -m benchmark run output_dir={out}` first "
                             "or pass the directory that holds results.jsonl")
    groups = _leaderboard_groups(records)
    figures = _draw_figures(out, groups)
    provenance = _provenance(records)
    md, html_path = out / "leaderboard.md", out / "leaderboard.html"
    atomic_write_text(md, leaderboard_markdown(groups, figures, provenance))
    atomic_write_text(html_path, leaderboard_html(groups, figures, provenance, embed_dir=out))
    return [md, html_path] + [out / rel for g in figures.values() for rel in g.values()]


def _draw_figures(out: Path, groups: list[dict[str, Any]]) -> dict[tuple, dict[str, str]]:
    """group -> {figure name: path relative to ``out``}; a figure that cannot be drawn is left
    out with a warning, never failing the report."""
    from benchmark import figures as F

    drawn: dict[tuple, dict[str, str]] = {}
    # one colour per method label across every group and figure of the report
    seen = {row["label"]: row["method"] for g in groups for row in g["rows"]}
    order = sorted(seen, key=lambda label: (seen[label] not in ("retrain", "original"), label))
    colors = F.method_colors(order, [seen[label] for label in order])
    for g in groups:
        slug, title = _slug(g["key"]), _title(g["key"])
        rows = [(row["label"], row["method"], row["summaries"], row["censored"]) for row in g["rows"]]
        curve_rows = [(row["label"], row["method"], row["cells"]) for row in g["rows"]]
        jobs = [("avg_gap", partial(F.plot_avg_gap_bars, rows, title=title, colors=colors)),
                ("ra_rcd", partial(F.plot_ra_vs_rcd, rows, title=title, attacker="sgd", colors=colors)),
                ("relearn", partial(F.plot_relearn_seeds, out, curve_rows, title=title, colors=colors))]
        for name, draw in jobs:
            rel = f"figures/leaderboard-{slug}-{name}.png"
            try:
                if draw(path=out / rel):
                    drawn.setdefault(g["key"], {})[name] = rel
            except Exception as e:  # noqa: BLE001 - a figure must never cost the report
                print(f"warning: could not draw {rel}: {type(e).__name__}: {e}", flush=True)
    return drawn
