"""The leaderboard from stored records alone: ranking, numbers, html, figures, portability."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from benchmark.errors import BenchmarkError
from benchmark.report import format_table, group_summaries, write_leaderboard

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
T975_DF1 = 12.706204736  # two-sided 95% Student-t critical value, 1 degree of freedom

# per method, per seed: Avg Gap, SGD-RCD (None: undefined), SGD censored, RA
VALUES = {
    "retrain": {0: (0.0, 1.0, 0, 99.0), 1: (0.0, 1.0, 0, 98.0)},
    "grad_ascent": {0: (4.0, 0.2, 0, 90.0), 1: (6.0, 0.4, 0, 88.0)},
    "finetune": {0: (1.0, 2.0, 1, 97.0), 1: (3.0, 3.0, 0, 96.0)},
    "original": {0: (9.0, 0.0, 0, 100.0), 1: (11.0, None, 0, 100.0)},
}


def _record(method: str, seed: int, **over) -> dict:
    gap, rcd, cens, ra = VALUES[method][seed]
    metrics = {"gap/avg": gap, "eval/ra": ra, "eval/ta": ra - 5, "eval/ua": 100 - ra, "eval/mia/efficacy": 10.0 + seed,
               "relearn/sgd/rcd": rcd, "relearn/sgd/censored": float(cens), "relearn/sgd/oracle_censored": 0.0,
               "time/unlearn_s": 1.5}  # no adam attacker at all: its column must read "-"
    rec = {"cell_id": f"{method}-s{seed}", "dataset": "digits", "model": "digits_cnn", "method": method,
           "scenario": "random", "ratio": 0.1, "seed": seed, "status": "ok", "metrics": metrics,
           "undefined": {} if rcd is not None else {"relearn/sgd/rcd": "the oracle is already at the target"},
           "directions": {"gap/avg": "lower"}, "protocol_version": "1.0", "git": "abc123",
           "config": {"cell": {"method_args": {}}, "cache_dir": "/somewhere/else/.cache"}}
    rec.update(over)
    return rec


def _curve(method: str, seed: int) -> dict:
    steps = [0, 5, 10, 15, 20]
    start = {"original": 0.05, "retrain": 2.0, "finetune": 2.5, "grad_ascent": 1.0}[method] + 0.1 * seed
    curve = {"steps": steps, "loss": [start * 0.7**i for i in range(5)], "acc": [50.0 + 10 * i for i in range(5)],
             "weight_dist": [0.01 * i for i in range(5)], "max_steps": 20, "seconds": 0.1}
    return {"levels": {"L_o": 0.05, "L_r": 2.0, "L_star": 0.1475, "A_o": 100.0, "A_r": 60.0, "A_star": 98.0},
            "curves": {"sgd": curve, "adam": {**curve, "loss": [v * 0.5 for v in curve["loss"]]}}}


@pytest.fixture
def out(tmp_path: Path) -> Path:
    d = tmp_path / "run"
    (d / "curves").mkdir(parents=True)
    records = [_record(m, s) for m in VALUES for s in (0, 1)]
    records.append({**_record("finetune", 0), "cell_id": "unsir-s0", "method": "unsir", "status": "skipped",
                    "metrics": {}, "error": "unsir needs forget.scenario=class"})
    records.append({**_record("finetune", 1), "cell_id": "scrub-s1", "method": "scrub", "status": "failed",
                    "metrics": {}, "error": "RuntimeError: CUDA out of memory"})
    (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + "{damaged line\n")
    for m in VALUES:
        for s in (0, 1):
            if (m, s) != ("grad_ascent", 1):  # one curve file missing: tolerated
                (d / "curves" / f"{m}-s{s}.json").write_text(json.dumps(_curve(m, s)))
    return d


def _table_rows(md: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines()
            if line.startswith("| ") and not line.startswith("| rank")]


def test_markdown_ranks_by_mean_avg_gap_with_intervals(out: Path):
    paths = write_leaderboard(out)
    assert paths[:2] == [out / "leaderboard.md", out / "leaderboard.html"]
    md = (out / "leaderboard.md").read_text()
    rows = _table_rows(md)
    assert [r[1] for r in rows] == ["**retrain** (oracle)", "finetune", "grad_ascent", "original"]
    assert [r[0] for r in rows] == ["ref", "1", "2", "3"]
    header = next(line for line in md.splitlines() if line.startswith("| rank"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "rank", "method", "Avg Gap", "RCD-sgd", "RCD-adam", "RA", "TA", "UA", "MIA-efficacy", "n"]
    # finetune Avg Gap over seeds {1, 3}: mean 2, sample std sqrt(2), half-width t(1) * sqrt(2) / sqrt(2)
    half = T975_DF1 * math.sqrt(2) / math.sqrt(2)
    ft = rows[1]
    assert ft[2] == f"2.00 ± {half:.2f}" == "2.00 ± 12.71"
    # RA {97, 96}: mean 96.5, std sqrt(0.5), half-width t(1) * sqrt(0.5) / sqrt(2) = 6.35
    assert ft[5] == f"96.5 ± {T975_DF1 * math.sqrt(0.5) / math.sqrt(2):.1f}" == "96.5 ± 6.4"
    # one of finetune's seeds hit the attack budget: RCD {2, 3} is a lower bound
    assert ft[3] == f"≥2.50 ± {T975_DF1 * math.sqrt(0.5) / math.sqrt(2):.2f}"
    assert "finetune RCD-sgd: 1 of 2 seed(s) never relearned" in md
    assert ft[4] == "-" and ft[9] == "2"  # no adam attacker stored: "-"; n = 2 seeds
    # original's RCD is undefined in seed 1: one value left, shown as a single seed, reason listed
    assert rows[3][3] == "0.00 (n=1)"
    assert "the oracle is already at the target" in md
    assert "95% Student-t interval" in md and "n = 2 seeds (seeds 0, 1)" in md
    # failed and skipped cells listed below with their error
    assert "failed: scrub seed=1: RuntimeError: CUDA out of memory" in md
    assert "skipped: unsir seed=0: unsir needs forget.scenario=class" in md
    assert "/somewhere" not in md  # nothing machine-specific leaks in


def test_html_is_self_contained_and_sortable(out: Path):
    write_leaderboard(out)
    html = (out / "leaderboard.html").read_text()
    assert "<table" in html and "addEventListener('click'" in html and "<script>" in html
    table = html[html.index("<table"):html.index("</table>")]
    for m in VALUES:
        assert f">{m}" in table
    assert "scrub seed=1" in html  # the failed cell
    # no network: no external scripts, styles or images
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert html.count("data:image/png;base64,") == 3
    # numbers carry their mean for sorting: finetune's Avg Gap
    assert 'data-v="2.0">2.00 ± 12.71' in html


def test_figures_are_valid_pngs(out: Path):
    paths = write_leaderboard(out)
    pngs = [p for p in paths if p.suffix == ".png"]
    names = {p.name.rsplit("-", 1)[1] for p in pngs}
    assert names == {"avg_gap.png", "ra_rcd.png", "relearn.png"}
    for p in pngs:
        assert p.parent == out / "figures" and p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 5000
    md = (out / "leaderboard.md").read_text()
    assert "](figures/leaderboard-" in md  # relative links


def test_results_copied_to_another_machine_still_report(out: Path, tmp_path: Path):
    other = tmp_path / "elsewhere" / "copied"
    other.mkdir(parents=True)
    shutil.copy(out / "results.jsonl", other / "results.jsonl")  # no curves, no cache, no config
    paths = write_leaderboard(other)
    md = (other / "leaderboard.md").read_text()
    assert [r[1] for r in _table_rows(md)][1:] == ["finetune", "grad_ascent", "original"]
    assert "2.00 ± 12.71" in md
    assert (other / "leaderboard.html").exists()
    # without curve files the relearning figure is left out, the others remain
    assert {p.name.rsplit("-", 1)[1] for p in paths if p.suffix == ".png"} == {"avg_gap.png", "ra_rcd.png"}


def test_missing_metrics_show_dash(tmp_path: Path):
    rec = _record("finetune", 0)
    rec["metrics"] = {"eval/ra": 97.0}
    (tmp_path / "results.jsonl").write_text(json.dumps(rec) + "\n")
    write_leaderboard(tmp_path)
    (row,) = _table_rows((tmp_path / "leaderboard.md").read_text())
    assert row[:3] == ["-", "finetune", "-"] and row[5] == "97.0 (n=1)"


@pytest.mark.parametrize("content", [None, "", "\n\n"])
def test_no_results_is_one_line_error_naming_the_fix(tmp_path: Path, content: str | None):
    if content is not None:
        (tmp_path / "results.jsonl").write_text(content)
    with pytest.raises(BenchmarkError) as e:
        write_leaderboard(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "results.jsonl" in msg and "python -m benchmark run output_dir=" in msg


def test_cli_report_prints_paths(out: Path, capsys):
    from benchmark.cli import main

    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[:2] == [str(out / "leaderboard.md"), str(out / "leaderboard.html")]


def test_existing_table_functions_unchanged(out: Path):
    from benchmark.results import read_results

    records = read_results(out)
    rows = group_summaries(records)
    assert rows[("digits", "random", 0.1, "finetune")]["gap/avg"]["mean"] == pytest.approx(2.0)
    assert "scrub seed=1" in format_table(records)
