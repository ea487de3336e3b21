"""The local leaderboard: ``leaderboard.md``, a self-contained ``leaderboard.html`` and figures.

Built from the one results layer (:mod:`benchmark.results`): one table per
``table_key``, one row per ``row_key`` (a method variant) with its seeds pooled,
ranked by mean Avg Gap with the retrain oracle shown first as an unranked
reference. Columns come from the metric registry (Avg Gap, the ranking key,
first). Stale records (made with other code) are never ranked or pooled; each
table says how many it has. The html is rendered from
``benchmark/templates/leaderboard.html.j2`` with jinja2 (autoescaped).
"""

from __future__ import annotations

import base64
import math
import sys
from collections import defaultdict
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.errors import BenchmarkError
from benchmark.io import atomic_write_text
from benchmark.metrics import Column, format_cell, table_columns
from benchmark.results import (
    RESULTS,
    ReadResult,
    attackers,
    load_table,
    metric_summary,
    read_records,
    summarize_rows,
    table_order,
    table_titles,
)

RANK_KEY = "gap/avg"  # the ranking metric, lower is better
REFERENCE = "retrain"  # the oracle row: shown first as the reference, never ranked
MISSING = "-"
LOWER_BOUND = "≥"  # an RCD mean over seeds of which at least one is censored at the attack budget
MAX_READ_WARNINGS = 10  # damaged lines printed one by one; the rest are counted
STALE = "stale: {n} record(s) made with other code; rerun to refresh"
CAPTIONS = {"avg_gap": "Avg Gap per method, bars = mean, error bars = 95% t-interval over seeds "
                       "(lower is better; the oracle is 0 by definition)",
            "ra_rcd": "Retain accuracy vs relearning delay (RCD_acc, SGD attacker); RCD = 1 is the oracle, "
                      "▷ = censored (lower bound)",
            "relearn": "Relearning curves: forget accuracy vs attack step, each seed and attack repeat faint, "
                       "mean bold; dotted red = target level A*",
            "fq": "Forgetting quality against a population of oracles (eval.population.k): mean ± 95% interval, "
                  "dotted = the oracle's own line; right: per-example epsilons, the oracle's filled grey"}


def _value(r: Mapping[str, Any], key: str) -> float | None:
    v = (r.get("metrics") or {}).get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _slug(title: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in title.replace(" / ", "-").replace(" ", "_"))


def _rank(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reference rows first (unranked), then by mean Avg Gap; ties share a rank, rows
    without an Avg Gap come last, unranked."""

    def gap(row: dict) -> float:
        m = row["summaries"][RANK_KEY]["mean"]
        return math.inf if m is None else m

    ref = sorted((r for r in rows if r["method"] == REFERENCE), key=lambda r: r["label"])
    ranked = sorted((r for r in rows if r["method"] != REFERENCE), key=lambda r: (gap(r), r["label"]))
    prev, rank = None, 0
    for i, row in enumerate(ranked, 1):
        g = gap(row)
        row["rank"] = None if g == math.inf else (rank if g == prev else i)
        if g != math.inf:
            rank, prev = row["rank"], g
    for row in ref:
        row["rank"] = None
    return ref + ranked


def leaderboard_groups(df: pd.DataFrame) -> list[dict[str, Any]]:
    """One group per table of a :func:`benchmark.results.load_table` frame.

    Each group: ``key`` (table_key), ``title``, ``slug``, ``columns`` (registry
    :class:`Column`s shown), ``rows`` (ranked; each with label, method, rank, n,
    seeds, cells (the records), censored {attacker: (k censored, n, oracle
    censored)}, undefined {key: reason} and summaries {key: summary}), ``seeds``,
    ``warnings``, ``not_ok`` (non-stale records that did not finish) and ``stale``
    (the count of stale records).
    """
    atts = attackers(df)
    registry = table_columns(atts)
    cols = [c for c in registry if c.key == RANK_KEY] + [c for c in registry if c.key != RANK_KEY]
    titles = table_titles(df)
    record_of = dict(zip(df["cell_id"], df["record"], strict=True))
    summary = summarize_rows(df, [c.key for c in cols]).to_dict("records")
    groups, slugs = [], set()
    for tk in table_order(df):
        rows = []
        for s in (r for r in summary if r["table_key"] == tk):
            cells = [record_of[c] for c in s["cell_ids"]]
            censored = {}  # RCD key -> (seeds censored, seeds with a value, oracle censored in some seed)
            for a in atts:
                for crit, suffix in (("rcd_acc", "_acc"), ("rcd", "")):
                    key = f"relearn/{a}/{crit}"
                    flags = [bool(_value(r, f"relearn/{a}/censored{suffix}")) for r in cells
                             if _value(r, key) is not None]
                    oracle = any(_value(r, f"relearn/{a}/oracle_censored{suffix}") for r in cells)
                    censored[key] = (sum(flags), len(flags), oracle)
            undefined: dict[str, str] = {}
            for r in cells:
                for k, why in (r.get("undefined") or {}).items():
                    undefined.setdefault(k, str(why))
            rows.append({"label": s["label"], "method": s["method"], "n": s["n"], "seeds": s["seeds"],
                         "cells": cells, "censored": censored, "undefined": undefined,
                         "summaries": {c.key: metric_summary(s, c.key) for c in cols}})
        shown = [c for c in cols if c.key == RANK_KEY or any(
            row["summaries"][c.key]["n"] or c.key in row["undefined"] for row in rows)]
        sub = df[df["table_key"] == tk]
        current = sub[~sub["stale"]]
        seeds_of: dict[str, set] = defaultdict(set)
        for r in current[current["status"] == "ok"]["record"]:
            for w in r.get("warnings") or []:
                seeds_of[str(w)].add(r.get("seed"))
        slug = _slug(titles[tk])
        slug = slug if slug not in slugs else f"{slug}-{tk[:6]}"
        slugs.add(slug)
        groups.append({
            "key": tk, "title": titles[tk], "slug": slug, "columns": shown, "rows": _rank(rows),
            "seeds": sorted({s for row in rows for s in row["seeds"]}, key=str),
            "warnings": [f"seed {', '.join(str(s) for s in sorted(seeds, key=str))}: {w}"
                         for w, seeds in sorted(seeds_of.items())],
            "not_ok": sorted((r for r in current[current["status"] != "ok"]["record"]),
                             key=lambda r: (str(r.get("method")), str(r.get("seed")))),
            "labels": dict(zip(sub["cell_id"], sub["label"], strict=True)),
            "stale": int(sub["stale"].sum())})
    return groups


# ---------------------------------------------------------------------------- text pieces
def _cell_text(row: dict[str, Any], col: Column) -> str:
    s = row["summaries"].get(col.key) or {}
    if not s.get("n"):
        return MISSING
    text = format_cell(s, col.digits)
    if row["censored"].get(col.key, (0, 0, False))[0]:
        text = LOWER_BOUND + text
    return text


def _rank_text(row: dict[str, Any]) -> str:
    return "ref" if row["method"] == REFERENCE else (str(row["rank"]) if row["rank"] else MISSING)


def interval_line(group: dict[str, Any]) -> str:
    ns = sorted({row["n"] for row in group["rows"]})
    seeds = ", ".join(str(s) for s in group["seeds"]) or "none"
    n_text = (f"n = {ns[0]} seeds" if len(ns) == 1 else f"n = {ns[0]}-{ns[-1]} seeds per method") if ns else "n = 0"
    return (f"Each cell: mean ± half-width of the 95% Student-t interval over seeds (t with n-1 degrees of "
            f"freedom × sample std / √n; `(n=1)` means a single seed, no interval); {n_text} (seeds {seeds}). "
            f"Ranked by mean Avg Gap, lower is better; `{REFERENCE}` is the oracle reference, not ranked. "
            "Avg Gap's MIA-efficacy term reads confidences, so rescaling the logits moves it; RCD (accuracy "
            "criterion) and FQ cannot be moved that way (docs/protocol.md s.3-4).")


def footnotes(group: dict[str, Any]) -> list[str]:
    """Censored RCDs, the oracle's own censoring, and undefined values with their reasons."""
    notes = []
    shown = {c.key for c in group["columns"]}
    for row in group["rows"]:
        for key, (k, n, oracle) in row["censored"].items():
            if key not in shown:
                continue
            title = next(c.title for c in group["columns"] if c.key == key)
            if k:
                notes.append(f"{LOWER_BOUND} {row['label']} {title}: {k} of {n} seed(s) never relearned within the "
                             "attack budget (T censored at the budget), so the value is a lower bound.")
            if oracle and row["method"] != REFERENCE:
                notes.append(f"{row['label']} {title}: the oracle's own T was censored in some seed, so that "
                             "seed's ratio is undefined.")
    reasons: dict[str, set[str]] = defaultdict(set)
    for row in group["rows"]:
        for key, why in row["undefined"].items():
            if key in shown:
                reasons[f"{key}: {why}"].add(row["label"])
    for text, labels in sorted(reasons.items()):
        notes.append(f"{MISSING} undefined {text} ({', '.join(sorted(labels))})")
    return notes


def not_ok_line(group: dict[str, Any], r: Mapping[str, Any]) -> str:
    err = " ".join(str(r.get("error") or "no error recorded").split())
    label = group["labels"].get(r.get("cell_id"), r.get("method"))
    return f"{r.get('status', '?')}: {label} seed={r.get('seed')}: {err}"


def stale_text(group: dict[str, Any]) -> str | None:
    return STALE.format(n=group["stale"]) if group["stale"] else None


def provenance(df: pd.DataFrame, read: ReadResult | None = None) -> str:
    """One line: how many records of which status, protocols, code revisions, what was skipped."""
    status = df["status"].value_counts()
    records = list(df["record"])
    protocols = sorted({str(r.get("protocol_version")) for r in records if r.get("protocol_version")})
    revs = sorted({str(r.get("git"))[:12] + ("-dirty" if str(r.get("git")).endswith("-dirty") else "")
                   for r in records if r.get("git")})
    parts = [f"{len(records)} result records (" + ", ".join(f"{v} {k}" for k, v in sorted(status.items())) + ")"]
    if protocols:
        parts.append("protocol " + ", ".join(protocols))
    if revs:
        parts.append("code " + ", ".join(revs[:3]) + (" ..." if len(revs) > 3 else ""))
    if int(df["stale"].sum()):
        parts.append(f"{int(df['stale'].sum())} stale")
    if read is not None and read.skipped_lines:
        lines = ", ".join(str(n) for n in read.skipped_lines[:MAX_READ_WARNINGS])
        parts.append(f"{len(read.skipped_lines)} unreadable line(s) of {RESULTS} skipped (line {lines}"
                     + (" ..." if len(read.skipped_lines) > MAX_READ_WARNINGS else "") + ")")
    if read is not None and read.duplicates:
        parts.append(f"{len(read.duplicates)} cell(s) found on several lines, counted once")
    return "; ".join(parts) + "."


# ---------------------------------------------------------------------------- markdown and html
def leaderboard_markdown(groups: list[dict[str, Any]], figures: dict[str, dict[str, str]] | None = None,
                         provenance: str = "", sections: list[dict[str, Any]] | None = None) -> str:
    """The markdown leaderboard (figures: table_key -> {name: path relative to the file}),
    then the extra ``sections`` (:func:`tuning_section`, :func:`claims_section`)."""
    lines = ["# Unlearning leaderboard", ""]
    if provenance:
        lines += [provenance, ""]
    for g in groups:
        cols = g["columns"]
        lines += [f"## {g['title']}", "", interval_line(g), ""]
        lines += ["| " + " | ".join(["rank", "method", *[c.title for c in cols], "n"]) + " |",
                  "|" + "|".join(["---:", ":---"] + ["---:"] * (len(cols) + 1)) + "|"]
        for row in g["rows"]:
            label = f"**{row['label']}** (oracle)" if row["method"] == REFERENCE else row["label"]
            cells = [_cell_text(row, c) for c in cols]
            lines.append("| " + " | ".join([_rank_text(row), label, *cells, str(row["n"])]) + " |")
        if not g["rows"]:
            lines.append("| - | (no finished cell) |" + " |" * (len(cols) + 1))
        if stale_text(g):
            lines += ["", stale_text(g)]
        notes = footnotes(g)
        if notes:
            lines += [""] + [f"- {n}" for n in notes]
        if g["warnings"]:
            lines += [""] + [f"> warning: {w}" for w in g["warnings"]]
        if g["not_ok"]:
            lines += ["", f"Cells that did not finish ({len(g['not_ok'])}):", ""]
            lines += [f"- {not_ok_line(g, r)}" for r in g["not_ok"]]
        for name, rel in (figures or {}).get(g["key"], {}).items():
            lines += ["", f"![{name}]({rel})"]
        lines.append("")
    for sec in sections or []:
        lines += [f"## {sec['title']}", ""] + [p + "\n" for p in sec["paragraphs"]]
        if sec.get("table"):
            t = sec["table"]
            lines += ["| " + " | ".join(t["headers"]) + " |", "|" + "|".join([":---"] * len(t["headers"])) + "|"]
            lines += ["| " + " | ".join(r) + " |" for r in t["rows"]] + [""]
        for block in sec.get("blocks", []):
            lines += [f"### {block['title']}", ""]
            for item in block["items"]:
                lines.append(f"- {item['text']}")
                lines += [f"  - {sub}" for sub in item.get("sub", [])]
            lines.append("")
        for f in sec.get("figures", []):
            lines += [f"![{f['name']}]({f['rel']})", ""]
    return "\n".join(lines)


def _png_width(path: Path) -> int | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)  # PNG: 8-byte signature, IHDR length+type, then width (big-endian)
    except OSError:
        return None
    return int.from_bytes(head[16:20], "big") if head[:8] == b"\x89PNG\r\n\x1a\n" else None


def _figure_view(rel: str, name: str, embed_dir: Path | None) -> dict[str, Any]:
    src, width = rel, None
    if embed_dir is not None:
        try:
            src = "data:image/png;base64," + base64.b64encode((embed_dir / rel).read_bytes()).decode("ascii")
            width = _png_width(embed_dir / rel)
        except OSError:
            pass
    return {"src": src, "width": width, "name": name, "caption": CAPTIONS.get(name, name)}


def _group_view(g: dict[str, Any], figures: dict[str, str], embed_dir: Path | None) -> dict[str, Any]:
    rows = []
    for row in g["rows"]:
        is_ref = row["method"] == REFERENCE
        cells = [{"v": "-1" if is_ref else ("" if row["rank"] is None else str(row["rank"])),
                  "text": _rank_text(row), "cls": ""},
                 {"v": None, "text": row["label"] + (" (oracle)" if is_ref else ""), "cls": "l"}]
        for c in g["columns"]:
            mean = row["summaries"][c.key]["mean"]
            cells.append({"v": "" if mean is None else repr(float(mean)), "text": _cell_text(row, c), "cls": ""})
        cells.append({"v": str(row["n"]), "text": str(row["n"]), "cls": ""})
        rows.append({"ref": is_ref, "cells": cells})
    return {"id": g["slug"], "title": g["title"], "meta": interval_line(g).replace("`", ""),
            "headers": [c.title for c in g["columns"]], "rows": rows, "notes": footnotes(g),
            "warnings": g["warnings"], "stale": stale_text(g), "not_ok": [not_ok_line(g, r) for r in g["not_ok"]],
            "figures": [_figure_view(rel, name, embed_dir) for name, rel in figures.items()]}


def leaderboard_html(groups: list[dict[str, Any]], figures: dict[str, dict[str, str]] | None = None,
                     provenance: str = "", embed_dir: Path | None = None,
                     sections: list[dict[str, Any]] | None = None) -> str:
    """The self-contained html leaderboard: sortable tables and figures. With ``embed_dir``
    the PNGs (paths relative to it) are embedded as base64; otherwise referenced relatively."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("benchmark", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    views = [_group_view(g, (figures or {}).get(g["key"], {}), embed_dir) for g in groups]
    extra = [{"table": None, "blocks": [], **sec, "id": _slug(sec["title"]),
              "figures": [{**_figure_view(f["rel"], f["name"], embed_dir), "caption": f["caption"]}
                          for f in sec.get("figures", [])]} for sec in sections or []]
    return env.get_template("leaderboard.html.j2").render(groups=views, provenance=provenance, sections=extra)


# ---------------------------------------------------------------------------- files
def write_leaderboard(output_dir: str | Path, current_fingerprints: Mapping[str, str] | None = None) -> list[Path]:
    """Writes ``leaderboard.md``, ``leaderboard.html`` and PNG figures under ``figures/``
    from ``<output_dir>/results.jsonl`` and the stored curves ``curves/<cell_id>.json``.

    Reads nothing else (no config, cache or model), so results copied from another
    machine report the same. Missing metrics show as ``-``; a missing curve file only
    drops that curve; a damaged line of results.jsonl is skipped with a warning.

    Returns:
        The written paths: the markdown, the html, then the figures.

    Raises:
        BenchmarkError: There is no results.jsonl, or it holds no record.
    """
    out = Path(output_dir)
    read = read_records(out)
    for w in read.warnings[:MAX_READ_WARNINGS]:  # on stderr: stdout lists the written paths
        print(w, file=sys.stderr, flush=True)
    if len(read.warnings) > MAX_READ_WARNINGS:
        print(f"warning: {len(read.warnings) - MAX_READ_WARNINGS} more problems in {out / RESULTS}",
              file=sys.stderr, flush=True)
    if not read.records:
        what = "holds no record" if (out / RESULTS).exists() else "does not exist"
        raise BenchmarkError(f"{out / RESULTS} {what}; run `python -m benchmark run output_dir={out}` first "
                             "or pass the directory that holds results.jsonl")
    df = load_table(read, current_fingerprints)
    groups = leaderboard_groups(df)
    figures = _draw_figures(out, groups)
    sections = [s for s in (tuning_section(out), claims_section(df)) if s is not None]
    line = provenance(df, read)
    md, html_path = out / "leaderboard.md", out / "leaderboard.html"
    atomic_write_text(md, leaderboard_markdown(groups, figures, line, sections))
    atomic_write_text(html_path, leaderboard_html(groups, figures, line, embed_dir=out, sections=sections))
    return [md, html_path] + [out / rel for g in figures.values() for rel in g.values()] + [
        out / f["rel"] for sec in sections for f in sec.get("figures", [])]


# ---------------------------------------------------------------------------- extra sections
def _short_value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def tuning_section(out: Path) -> dict[str, Any] | None:
    """The studies of ``<out>/tune/trials.jsonl`` (``python -m benchmark tune`` with the same
    ``output_dir``): the best parameters per method and forget setting, and per method a PNG of
    Optuna's optimisation history and parameter importances. None when nothing was tuned there."""
    from benchmark import figures as F
    from benchmark.results.trials import TRIALS, read_trials

    studies = read_trials(out)
    if not studies:
        return None
    rows, figs = [], []
    for st in sorted(studies, key=lambda s: (str(s.suite.get("dataset")), str(s.suite.get("model")),
                                             str(s.suite.get("scenario")), s.setting, s.method)):
        best, dflt = st.best(), st.defaults()
        where = f"{st.suite.get('dataset')}/{st.suite.get('model')}/{st.suite.get('scenario')} {st.setting}"
        if st.multi:  # Avg Gap / RCD of the selected trial, and how many trials the front holds
            shown = (lambda t: f"{t['values'][0]:.3f} / {t['values'][1]:.2f}")  # noqa: E731
            front = f"; front of {len(st.front())}"
        else:
            shown, front = (lambda t: f"{t['value']:.3f}"), ""  # noqa: E731
        rows.append([where, st.method, str(st.suite.get("objective")),
                     "-" if best is None else f"{shown(best)} (trial {best['number']}{front})",
                     "-" if dflt is None else shown(dflt),
                     f"{len(st.complete())}/{st.failed()}", f"{st.seconds():.1f}",
                     "-" if best is None else ", ".join(f"{k}={_short_value(v)}" for k, v in best["params"].items())])
        rel = f"figures/tune-{_slug(st.name)}.png"
        try:
            if F.plot_tuning_study(st, out / rel):
                figs.append({"name": f"tune-{st.method}-{st.setting}", "rel": rel,
                             "caption": f"{st.method} ({where}): "
                             + ("Pareto front" if st.multi else "optimisation history") + " and parameter importances"})
        except Exception as e:  # noqa: BLE001 - a figure must never cost the report
            print(f"warning: could not draw {rel}: {type(e).__name__}: {e}", flush=True)
    return {"title": "Tuning", "paragraphs": [
        f"{len(studies)} Optuna studies in `{TRIALS.as_posix()}` (every trial, exported by `python -m benchmark tune`). "
        "Best: the selected trial's objective on the held-out forget draws (never the reported ones); defaults: "
        "trial 0, the declared defaults; trials: complete/failed; seconds: the trials' wall time. Objective "
        "avg_gap_rcd shows Avg Gap / RCD: the selected trial is the Pareto front's highest RCD within "
        "tune.gap_tolerance points of the front's lowest Avg Gap, and its figure is the front."],
        "table": {"headers": ["setting", "method", "objective", "best", "defaults", "trials", "seconds",
                              "best parameters"], "rows": rows},
        "figures": figs}


def claims_section(df: pd.DataFrame) -> dict[str, Any] | None:
    """The seed paper's claims with their verdicts (:mod:`benchmark.claims`); None without IEU rows."""
    from benchmark.claims import comparison_text, evaluate_claims

    entries = evaluate_claims(df)
    if not entries:
        return None
    def source(e: dict[str, Any]) -> str:
        return f"tuned hyperparameters from {Path(e['tuned_file']).name}" if e.get("tuned_file") else \
            f"{e['source']} hyperparameters"

    blocks = [{"title": f"{e['title']} ({source(e)})",
               "items": [{"text": f"{c['text']}: {c['verdict']}",
                          "sub": [comparison_text(x) for x in c["comparisons"]]
                          + ([f"not in this table: {', '.join(c['missing'])}"] if c["missing"] else [])}
                         for c in e["claims"]] + ([{"text": e["note"], "sub": []}] if e.get("note") else [])}
              for e in entries]
    return {"title": "Claims of the paper, checked", "paragraphs": [
        "Per comparison: IEU's mean and the other row's, the mean per-seed difference in the claim's direction "
        "(positive = as claimed) with its 95% Student-t interval over the seeds both rows hold, and the verdict "
        "(holds: the interval lies above 0; contradicted: below 0; inconclusive: it contains 0, or one seed). "
        "RCD is the headline accuracy-based RCD; a censored RCD is a lower bound. Tuned rows are compared with "
        "tuned rows from the same tuned file only, default rows with default rows; a method with several such rows "
        "in one table is left out, never pooled."], "blocks": blocks}


def _draw_figures(out: Path, groups: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """table_key -> {figure name: path relative to ``out``}; a figure that cannot be drawn
    is left out with a warning, never failing the report."""
    from benchmark import figures as F

    drawn: dict[str, dict[str, str]] = {}
    # one colour per row label across every table and figure of the report
    seen = {row["label"]: row["method"] for g in groups for row in g["rows"]}
    order = sorted(seen, key=lambda label: (seen[label] not in ("retrain", "original"), label))
    colors = F.method_colors(order, [seen[label] for label in order])
    for g in groups:
        rows = [(row["label"], row["method"], row["summaries"], row["censored"]) for row in g["rows"]]
        curve_rows = [(row["label"], row["method"], row["cells"]) for row in g["rows"]]
        jobs = [("avg_gap", partial(F.plot_avg_gap_bars, rows, title=g["title"], colors=colors)),
                ("ra_rcd", partial(F.plot_ra_vs_rcd, rows, title=g["title"], attacker="sgd", colors=colors)),
                ("relearn", partial(F.plot_relearn_seeds, out, curve_rows, title=g["title"], colors=colors)),
                ("fq", partial(F.plot_forgetting_quality, out, rows, curve_rows, title=g["title"], colors=colors))]
        for name, draw in jobs:
            rel = f"figures/leaderboard-{g['slug']}-{name}.png"
            try:
                if draw(path=out / rel):
                    drawn.setdefault(g["key"], {})[name] = rel
            except Exception as e:  # noqa: BLE001 - a figure must never cost the report
                print(f"warning: could not draw {rel}: {type(e).__name__}: {e}", flush=True)
        drawn.setdefault(g["key"], {}).update(_sample_grids(out, g))
        if not drawn[g["key"]]:
            del drawn[g["key"]]
    return drawn


def _sample_grids(out: Path, g: dict[str, Any]) -> dict[str, str]:
    """task=generate: the runner's sample-grid PNGs of the group's lowest seed (every model side by
    side, then one per method), linked as they are (samples are not stored in the records)."""
    cells = [c for row in g["rows"] for c in row["cells"] if c.get("samples") is not None]
    if not cells:
        return {}
    seed = min((c.get("seed") for c in cells), key=str)
    base = f"figures/samples-{cells[0].get('dataset')}-{cells[0].get('scenario')}-s{seed}"
    found = {}
    from benchmark.figures import file_label

    for name, rel in [("samples", f"{base}.png")] + [(f"samples {row['label']}",
                                                      f"{base}-{file_label(row['label'])}.png") for row in g["rows"]]:
        if (out / rel).is_file():
            found[name] = rel
    return found
