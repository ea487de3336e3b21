"""The claims section: paired per-seed comparisons with intervals and verdicts, tuned rows never
mixed with default rows, and the section in the generated leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.claims import CONTRADICTED, HOLDS, INCONCLUSIVE, evaluate_claims
from benchmark.report import write_leaderboard

T975_DF2 = 4.302652729749464  # two-sided 95% Student-t critical value, 2 degrees of freedom


def _record(method: str, seed: int, gap: float, rcd: float, source: str = "defaults", censored: float = 0.0) -> dict:
    metrics = {"gap/avg": gap, "eval/ra": 95.0, "relearn/sgd/rcd_acc": rcd, "relearn/sgd/censored_acc": censored,
               "relearn/sgd/oracle_censored_acc": 0.0}
    return {"cell_id": f"{method}-{source}-{seed}", "table_key": "T", "row_key": f"{method}-{source}",
            "dataset": "digits", "model": "digits_mlp", "scenario": "random", "ratio": 0.1, "method": method,
            "variant": "", "hparams_source": source, "seed": seed, "status": "ok", "metrics": metrics,
            "protocol_version": "1.1"}


def _records(source: str = "defaults") -> list[dict]:
    # IEU: gap 2,3,4 and RCD 3,4,5; finetune clearly worse; salun equal on average; scrub clearly better
    rows = {"ieu": ([2, 3, 4], [3, 4, 5]), "finetune": ([6, 7, 9], [0.1, 0.2, 0.1]),
            "salun": ([1, 4, 4], [4, 3, 5]), "scrub": ([0.5, 1, 2], [6, 7, 9]),
            "ieu_no_noise": ([2, 3, 4], [1, 2, 2])}
    return [_record(m, s, g[s], r[s], source) for m, (g, r) in rows.items() for s in range(3)]


def _claim(entry: dict, cid: str) -> dict:
    return next(c for c in entry["claims"] if c["id"] == cid)


def test_verdicts_follow_the_paired_interval():
    (entry,) = evaluate_claims(_records())
    assert entry["source"] == "defaults" and entry["title"]
    gap = _claim(entry, "avg_gap")
    by = {x["other"]: x for x in gap["comparisons"]}
    assert by["finetune"]["verdict"] == HOLDS and by["scrub"]["verdict"] == CONTRADICTED
    assert by["salun"]["verdict"] == INCONCLUSIVE
    assert gap["verdict"] == CONTRADICTED  # one comparison against the claim decides it
    assert gap["missing"] == ["random_label"]
    # finetune: differences (other - ieu) 4, 4, 5: mean 13/3, the t-interval with 2 degrees of freedom
    d = by["finetune"]["diff"]
    sd = (sum((x - 13 / 3) ** 2 for x in (4, 4, 5)) / 2) ** 0.5
    assert d["mean"] == pytest.approx(13 / 3) and d["half_width"] == pytest.approx(T975_DF2 * sd / 3 ** 0.5)
    assert by["finetune"]["subject_mean"] == pytest.approx(3.0) and by["finetune"]["other_mean"] == pytest.approx(22 / 3)
    abl = _claim(entry, "ablation")
    assert [x["other"] for x in abl["comparisons"]] == ["ieu_no_noise"] and abl["verdict"] == HOLDS
    assert "sgd attacker" in abl["text"]


def test_tuned_rows_are_compared_only_with_tuned_rows_and_stale_or_failed_cells_are_left_out():
    recs = _records("defaults") + [r for r in _records("tuned") if r["method"] in ("ieu", "finetune")]
    recs.append({**_record("salun", 3, 0.0, 99.0), "status": "failed"})
    entries = {e["source"]: e for e in evaluate_claims(recs)}
    assert set(entries) == {"defaults", "tuned"}
    tuned_gap = _claim(entries["tuned"], "avg_gap")
    assert [x["other"] for x in tuned_gap["comparisons"]] == ["finetune"]
    salun = next(x for x in _claim(entries["defaults"], "avg_gap")["comparisons"] if x["other"] == "salun")
    assert salun["seeds"] == [0, 1, 2]


def test_one_seed_is_inconclusive_and_censored_seeds_are_named():
    recs = [_record("ieu", 0, 1.0, 5.0, censored=1.0), _record("finetune", 0, 9.0, 0.1)]
    (entry,) = evaluate_claims(recs)
    rcd = _claim(entry, "rcd")
    (x,) = rcd["comparisons"]
    assert x["n"] == 1 and x["verdict"] == INCONCLUSIVE and x["censored"] == (1, 0)
    assert evaluate_claims([_record("finetune", 0, 9.0, 0.1)]) == []  # no IEU: no section


def test_the_leaderboard_has_the_claims_section(tmp_path: Path):
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records()))
    write_leaderboard(tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "## Claims of the paper, checked" in md
    assert "- IEU has a lower Avg Gap than FT, RL, SCRUB and SalUn: contradicted" in md
    assert "vs finetune: 3.00 vs 7.33, difference +4.33 [" in md
    html = (tmp_path / "leaderboard.html").read_text()
    assert "Claims of the paper, checked" in html and "vs finetune: 3.00 vs 7.33" in html


def test_rows_from_two_tuned_files_are_two_groups_and_a_method_with_two_rows_is_never_pooled():
    """Two tuned files give two groups, each compared within itself; within one group, a second
    row of a method (other hyperparameters: another row key) is left out and named, not merged
    seed by seed into the first (the bug: seed 0 of one row silently replaced the other's)."""
    def tuned(recs: list[dict], sha: str, name: str) -> list[dict]:
        return [{**r, "cell_id": f"{r['cell_id']}-{sha}", "row_key": f"{r['row_key']}-{sha}",
                 "tuned": {"file": f"/x/{name}.yaml", "sha256": sha}} for r in recs]

    a = tuned(_records("tuned"), "aaa", "first")
    b = tuned([r for r in _records("tuned") if r["method"] in ("ieu", "finetune")], "bbb", "second")
    b = [{**r, "metrics": {**r["metrics"], "gap/avg": 50.0}} if r["method"] == "ieu" else r for r in b]
    entries = evaluate_claims(a + b)
    assert [e["tuned_file"] for e in entries] == ["/x/first.yaml", "/x/second.yaml"]
    first = next(x for x in _claim(entries[0], "avg_gap")["comparisons"] if x["other"] == "finetune")
    assert first["subject_mean"] == pytest.approx(3.0)  # the first file's IEU alone
    second = _claim(entries[1], "avg_gap")
    assert [x["other"] for x in second["comparisons"]] == ["finetune"] and second["verdict"] == CONTRADICTED
    # one group where finetune has two rows (another row key, seed 0 only): finetune is left out, named
    clash = {**_record("finetune", 0, 100.0, 0.0, "tuned"), "cell_id": "ft-other", "row_key": "finetune-other-aaa",
             "tuned": {"file": "/x/first.yaml", "sha256": "aaa"}}
    (entry,) = [e for e in evaluate_claims(a + [clash]) if e["source"] == "tuned"]
    gap = _claim(entry, "avg_gap")
    assert "finetune" not in [x["other"] for x in gap["comparisons"]]
    assert "finetune (several rows: not pooled)" in gap["missing"]
    # and when IEU itself has two rows, no claim is checked and the section says why
    ieu2 = {**_record("ieu", 0, 0.0, 9.0, "tuned"), "cell_id": "ieu-other", "row_key": "ieu-other-aaa",
            "tuned": {"file": "/x/first.yaml", "sha256": "aaa"}}
    (entry,) = [e for e in evaluate_claims(a + [ieu2]) if e["source"] == "tuned"]
    assert entry["claims"] == [] and "not pooled" in entry["note"]
