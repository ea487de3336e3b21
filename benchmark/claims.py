"""The seed paper's claims, checked against stored results (the report's ``claims`` section).

Each claim compares IEU with another row of the same table, seed by seed: the per-seed
difference in the claimed direction (positive = the claim's way), its mean and 95%
Student-t interval over the seeds both rows hold (:func:`benchmark.metrics.summarize`).
The verdict follows the interval:

- ``holds``: the interval lies above 0;
- ``contradicted``: the interval lies below 0;
- ``inconclusive``: it contains 0 (or there is one seed, and so no interval).

Tuned rows are compared with tuned rows from the same tuned file (its SHA-256) and default
rows with default rows, never mixed; a method with two rows in one such group (the same
label from different hyperparameters) is left out of it, named, rather than pooled; stale
records and cells that did not finish are left out. An RCD whose attack reached its
budget (censored) is a lower bound; a comparison says how many of its seeds were.
Everything here reads :func:`benchmark.results.load_table`, so the section is generated
from the records alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from benchmark.metrics import summarize
from benchmark.results import attackers, load_table, table_order, table_titles
from benchmark.results.table import Source

SUBJECT = "ieu"
BASELINES = ("finetune", "random_label", "scrub", "salun")
ABLATIONS = ("ieu_no_ascent", "ieu_no_decay", "ieu_no_noise")
HOLDS, CONTRADICTED, INCONCLUSIVE = "holds", "contradicted", "inconclusive"


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: ``subject`` beats each of ``others`` on ``key`` (``better`` is its direction)."""

    id: str
    text: str  # with {attacker} where the key has one
    key: str  # a registered metric key, with {attacker}
    others: tuple[str, ...]
    better: str  # "lower" | "higher"
    subject: str = SUBJECT


CLAIMS = (
    Claim("avg_gap", "IEU has a lower Avg Gap than FT, RL, SCRUB and SalUn", "gap/avg", BASELINES, "lower"),
    Claim("rcd", "IEU has the highest RCD ({attacker} attacker) among FT, RL, SCRUB and SalUn",
          "relearn/{attacker}/rcd_acc", BASELINES, "higher"),
    Claim("ablation", "Each ablation of IEU (no ascent, no decay, no noise) lowers its RCD ({attacker} attacker)",
          "relearn/{attacker}/rcd_acc", ABLATIONS, "higher"),
)


def _value(record: dict[str, Any], key: str) -> float | None:
    v = (record.get("metrics") or {}).get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _censored(record: dict[str, Any], key: str) -> bool:
    if "/rcd_acc" not in key:
        return False
    return bool(_value(record, key.replace("/rcd_acc", "/censored_acc")))


def _verdict(s: dict[str, Any]) -> str:
    if s["n"] < 2:
        return INCONCLUSIVE
    if s["ci_low"] > 0:
        return HOLDS
    if s["ci_high"] < 0:
        return CONTRADICTED
    return INCONCLUSIVE


@dataclass
class _Group:
    """The rows of one table that a claim may compare: one hyperparameter source ("defaults",
    or "tuned" from one tuned file), each method's records by seed."""

    source: str
    tuned_file: str | None = None
    rows: dict[str, dict[Any, dict[str, Any]]] | None = None
    row_keys: dict[str, str] | None = None
    ambiguous: set[str] | None = None


def _groups(sub: pd.DataFrame) -> list[_Group]:
    """The table's rows at their declared (or tuned) values, no variant label, grouped by source
    and tuned file; a method with several rows (row keys) in a group is ambiguous there."""
    groups: dict[tuple[str, str | None], _Group] = {}
    for rec, method, variant in zip(sub["record"], sub["method"], sub["variant"], strict=True):
        source = str(rec.get("hparams_source") or "defaults")
        if variant or source not in ("defaults", "tuned"):
            continue
        tuned = rec.get("tuned") if source == "tuned" and isinstance(rec.get("tuned"), dict) else {}
        gid = (source, tuned.get("sha256"))
        g = groups.setdefault(gid, _Group(source, tuned.get("file"), {}, {}, set()))
        key = str(rec.get("row_key"))
        if g.row_keys.setdefault(method, key) != key:
            g.ambiguous.add(method)
        g.rows.setdefault(method, {})[rec.get("seed")] = rec
    for g in groups.values():
        for m in g.ambiguous:
            g.rows.pop(m, None)
    order = {"tuned": 0, "defaults": 1}
    return sorted(groups.values(), key=lambda g: (order[g.source], g.tuned_file or ""))


def compare(subject: dict[Any, dict[str, Any]], other: dict[Any, dict[str, Any]], key: str, better: str
            ) -> dict[str, Any]:
    """The paired comparison over the seeds both hold: per-seed difference in the claim's
    direction, its summary and verdict, the two means and the censored counts."""
    seeds = sorted((s for s in subject if s in other and _value(subject[s], key) is not None
                    and _value(other[s], key) is not None), key=str)
    sign = -1.0 if better == "lower" else 1.0
    a = [_value(subject[s], key) for s in seeds]
    b = [_value(other[s], key) for s in seeds]
    diff = summarize([sign * (x - y) for x, y in zip(a, b, strict=True)])
    return {"seeds": seeds, "n": len(seeds), "diff": diff, "verdict": _verdict(diff) if seeds else None,
            "subject_mean": summarize(a)["mean"], "other_mean": summarize(b)["mean"],
            "censored": (sum(_censored(subject[s], key) for s in seeds), sum(_censored(other[s], key) for s in seeds))}


def evaluate_claims(source: Source, claims: Sequence[Claim] = CLAIMS) -> list[dict[str, Any]]:
    """One entry per (table, hyperparameter source) that holds the subject (IEU) and at least
    one compared method: ``title``, ``source``, and per claim (expanded per attacker) its
    comparisons and overall verdict (``holds`` only if every comparison holds)."""
    df = load_table(source)
    df = df[(~df["stale"]) & (df["status"] == "ok")]
    titles = table_titles(df) if len(df) else {}
    atts = attackers(df) if len(df) else []
    out = []
    for tk in table_order(df) if len(df) else []:
        sub = df[df["table_key"] == tk]
        for group in _groups(sub):
            rows = group.rows
            if SUBJECT in group.ambiguous:  # which IEU? none is picked, and the reader is told
                out.append({"table_key": tk, "title": titles[tk], "source": group.source,
                            "tuned_file": group.tuned_file, "claims": [],
                            "note": f"{SUBJECT} has several rows with these hyperparameters' source (different "
                                    "hyperparameters or code); they are not pooled, so no claim is checked"})
                continue
            if SUBJECT not in rows:
                continue
            checked = []
            for c in claims:
                for att in (atts if "{attacker}" in c.key else [None]):
                    key = c.key.format(attacker=att) if att else c.key
                    comps = [{"other": o, **compare(rows[c.subject], rows[o], key, c.better)}
                             for o in c.others if o in rows]
                    comps = [x for x in comps if x["n"]]
                    if not comps:
                        continue
                    verdicts = {x["verdict"] for x in comps}
                    overall = (HOLDS if verdicts == {HOLDS} else CONTRADICTED if CONTRADICTED in verdicts
                               else INCONCLUSIVE)
                    missing = [o + (" (several rows: not pooled)" if o in group.ambiguous else "")
                               for o in c.others if o not in rows]
                    checked.append({"id": c.id, "text": c.text.format(attacker=att), "key": key, "better": c.better,
                                    "verdict": overall, "comparisons": comps, "missing": missing})
            if checked:
                out.append({"table_key": tk, "title": titles[tk], "source": group.source,
                            "tuned_file": group.tuned_file, "claims": checked})
    return out


def _num(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def comparison_text(x: dict[str, Any]) -> str:
    """``vs salun: 3.10 vs 0.57, difference +2.53 [+1.20, +3.86] over 3 seeds -> holds``."""
    d = x["diff"]
    interval = (f"[{d['ci_low']:+.2f}, {d['ci_high']:+.2f}]" if d["n"] > 1 else "(one seed: no interval)")
    cens = ""
    if any(x["censored"]):
        cens = f"; censored seeds {x['censored'][0]} (IEU) / {x['censored'][1]} ({x['other']}), lower bounds"
    return (f"vs {x['other']}: {_num(x['subject_mean'])} vs {_num(x['other_mean'])}, difference "
            f"{d['mean']:+.2f} {interval} over {x['n']} seed(s) -> {x['verdict']}{cens}")
