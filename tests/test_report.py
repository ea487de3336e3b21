"""Every table from stored records alone: ranking, numbers, html, figures, portability, and
one grouping everywhere (variants and models never pool)."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from benchmark.errors import BenchmarkError
from benchmark.loggers import leaderboard_rows
from benchmark.report import format_table, write_leaderboard, write_summary

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
               "relearn/sgd/rcd_acc": rcd, "relearn/sgd/censored_acc": float(cens),
               "relearn/sgd/oracle_censored_acc": 0.0,
               "time/unlearn_s": 1.5}  # no adam attacker at all: no RCD-adam column
    rec = {"cell_id": f"{method}-s{seed}", "dataset": "digits", "model": "digits_cnn", "method": method,
           "scenario": "random", "ratio": 0.1, "seed": seed, "status": "ok", "metrics": metrics,
           "undefined": {} if rcd is not None else {"relearn/sgd/rcd": "the oracle is already at the target",
                                                    "relearn/sgd/rcd_acc": "the oracle is already at the target"},
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
    # the registry's columns (the ranking key first), only those with a value
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "rank", "method", "AvgGap", "UA", "RA", "TA", "MIA-eff", "RCD-sgd", "RCDloss-sgd", "time_s", "n"]
    # finetune Avg Gap over seeds {1, 3}: mean 2, sample std sqrt(2), half-width t(1) * sqrt(2) / sqrt(2)
    half = T975_DF1 * math.sqrt(2) / math.sqrt(2)
    ft = rows[1]
    assert ft[2] == f"2.00 ± {half:.2f}" == "2.00 ± 12.71"
    # RA {97, 96}: mean 96.5, std sqrt(0.5), half-width t(1) * sqrt(0.5) / sqrt(2) = 6.35
    assert ft[4] == f"96.5 ± {T975_DF1 * math.sqrt(0.5) / math.sqrt(2):.1f}" == "96.5 ± 6.4"
    # one of finetune's seeds hit the attack budget: RCD {2, 3} is a lower bound
    assert ft[7] == f"≥2.50 ± {T975_DF1 * math.sqrt(0.5) / math.sqrt(2):.2f}"
    assert "finetune RCD-sgd: 1 of 2 seed(s) never relearned" in md
    assert ft[8] == ft[7]  # the loss criterion's column, censored the same way here
    assert ft[10] == "2"  # n = 2 seeds
    # original's RCD is undefined in seed 1: one value left, shown as a single seed, reason listed
    assert rows[3][7] == "0.00 (n=1)"
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
    assert row == ["-", "finetune", "-", "97.0 (n=1)", "1"]  # Avg Gap (the ranking key) stays, as "-"


@pytest.mark.parametrize("content", [None, "", "\n\n", "42\n"])
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
    captured = capsys.readouterr()
    printed = captured.out.split()
    assert printed[:2] == [str(out / "leaderboard.md"), str(out / "leaderboard.html")]
    # the damaged last line of the fixture: one warning naming it, on stderr; the rest reports
    n_lines = len((out / "results.jsonl").read_text().splitlines())
    assert f"results.jsonl line {n_lines} is not JSON" in captured.err
    assert f"1 unreadable line(s) of results.jsonl skipped (line {n_lines})" in (out / "leaderboard.md").read_text()


def test_printed_table_pools_seeds_and_lists_failures(out: Path):
    text = format_table(out, methods=["retrain", "original"])
    lines = text.splitlines()
    assert lines[1].startswith("digits / digits_cnn / random / ratio 0.1 | mean ± half-width")
    body = [line.split()[0] for line in lines[4:8]]
    assert body == ["retrain", "original", "finetune", "grad_ascent"]  # the given order first
    assert "2.00 ± 12.71" in next(line for line in lines if line.startswith("finetune"))
    assert "scrub seed=1: RuntimeError: CUDA out of memory" in text


# ---------------------------------------------------------------------------- one grouping key
def _cell(method: str, seed: int, gap: float, *, variant: str = "", model: str = "digits_cnn",
          setting: str = "s", **over) -> dict:
    """A record as the new runner writes it: identity keys, variant, hparams, code."""
    rec = _record("finetune", 0)
    row = f"{model}-{setting}-{method}-{variant}"
    rec.update({"cell_id": f"{row}-s{seed}", "config_id": f"cfg-{row}-s{seed}", "row_key": f"row-{row}",
                "table_key": f"table-{model}-{setting}", "model": model, "method": method, "seed": seed,
                "variant": variant, "hparams": {"alpha": 0.1 if variant else 1.0}, "hparams_source": "defaults",
                "code": {"fingerprint": "f1"}, "time": 1000.0 + seed, "undefined": {}})
    rec["metrics"] = {**rec["metrics"], "gap/avg": gap}
    rec.update(over)
    return rec


def _write(d: Path, records: list[dict]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return d


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """grad_ascent at its defaults and with alpha=0.1, and finetune on two models: 2 seeds each."""
    records = []
    for s in (0, 1):
        records += [_cell("grad_ascent", s, 1.0 + s), _cell("grad_ascent", s, 5.0 + s, variant="alpha=0.1"),
                    _cell("finetune", s, 2.0 + s), _cell("finetune", s, 8.0 + s, model="resnet18")]
    return _write(tmp_path / "mixed", records)


def test_variants_and_models_stay_separate_in_every_table(mixed: Path):
    # printed table: two tables (one per model), two grad_ascent rows, every row n = 2
    text = format_table(mixed)
    assert "digits / digits_cnn / random / ratio 0.1 |" in text and "digits / resnet18 / random / ratio 0.1 |" in text
    rows = {line.split()[0]: line.split()[-1] for line in text.splitlines() if line.startswith(("grad", "fine"))}
    assert rows == {"grad_ascent": "2", "grad_ascent{alpha=0.1}": "2", "finetune": "2"}
    assert sum(line.startswith("finetune ") for line in text.splitlines()) == 2
    # summary.json: 4 rows of n = 2, each with its own mean
    payload = json.loads(write_summary(mixed).read_text())
    got = {(r["model"], r["label"]): (r["n"], r["metrics"]["gap/avg"]["mean"]) for r in payload["rows"]}
    assert got == {("digits_cnn", "grad_ascent"): (2, 1.5), ("digits_cnn", "grad_ascent{alpha=0.1}"): (2, 5.5),
                   ("digits_cnn", "finetune"): (2, 2.5), ("resnet18", "finetune"): (2, 8.5)}
    assert payload["rows"][0]["hparams"] and {t["title"] for t in payload["tables"]} == {
        "digits / digits_cnn / random / ratio 0.1", "digits / resnet18 / random / ratio 0.1"}
    # leaderboard.md and .html
    write_leaderboard(mixed)
    md = (mixed / "leaderboard.md").read_text()
    assert [(r[1], r[2], r[-1]) for r in _table_rows(md)] == [
        ("grad_ascent", "1.50 ± 6.35", "2"), ("finetune", "2.50 ± 6.35", "2"),
        ("grad_ascent{alpha=0.1}", "5.50 ± 6.35", "2"), ("finetune", "8.50 ± 6.35", "2")]
    html = (mixed / "leaderboard.html").read_text()
    assert html.count('<table class="lb">') == 2 and "grad_ascent{alpha=0.1}</td>" in html
    # the W&B leaderboard table
    columns, wb = leaderboard_rows(mixed)
    col = {c: i for i, c in enumerate(columns)}
    got = {(r[col["model"]], r[col["label"]]): (r[col["n"]], r[col["gap/avg"]]) for r in wb}
    assert got == {("digits_cnn", "grad_ascent"): (2, 1.5), ("digits_cnn", "grad_ascent{alpha=0.1}"): (2, 5.5),
                   ("digits_cnn", "finetune"): (2, 2.5), ("resnet18", "finetune"): (2, 8.5)}
    assert wb[0][col["gap/avg ±95%"]] == pytest.approx(T975_DF1 * math.sqrt(0.5) / math.sqrt(2))


def test_old_records_with_different_method_args_stay_separate(tmp_path: Path):
    recs = []
    for s in (0, 1):
        for alpha, gap in ((1.0, 1.0), (0.1, 5.0)):
            r = _record("grad_ascent", s, cell_id=f"a{alpha}-s{s}")
            r["config"] = {"cell": {"method_args": {"alpha": alpha, "lr": 0.01}}}
            r["metrics"]["gap/avg"] = gap
            recs.append(r)
    d = _write(tmp_path / "old", recs)
    write_leaderboard(d)
    rows = _table_rows((d / "leaderboard.md").read_text())
    assert [(r[1], r[2], r[-1]) for r in rows] == [("grad_ascent{alpha=1.0}", "1.00 ± 0.00", "2"),
                                                   ("grad_ascent{alpha=0.1}", "5.00 ± 0.00", "2")]
    _, wb = leaderboard_rows(d)
    assert sorted(r[7] for r in wb) == ["grad_ascent{alpha=0.1}", "grad_ascent{alpha=1.0}"]


def test_tables_of_two_settings_get_different_titles(tmp_path: Path):
    d = _write(tmp_path / "settings", [_cell("finetune", 0, 1.0, setting="a"), _cell("finetune", 0, 3.0, setting="b")])
    write_leaderboard(d)
    md = (d / "leaderboard.md").read_text()
    titles = [line for line in md.splitlines() if line.startswith("## ")]
    assert len(titles) == 2 and len(set(titles)) == 2 and all(" / setting table" in t for t in titles)
    assert format_table(d).count("| mean ±") == 2


def test_stale_records_are_listed_not_pooled(tmp_path: Path):
    old = _cell("finetune", 0, 50.0, cell_id="old-code-s0", time=10.0)  # same config_id, older code
    d = _write(tmp_path / "stale", [old, _cell("finetune", 0, 2.0), _cell("finetune", 1, 4.0)])
    write_leaderboard(d)
    md = (d / "leaderboard.md").read_text()
    (row,) = _table_rows(md)
    assert row[1:3] == ["finetune", "3.00 ± 12.71"] and row[-1] == "2"
    assert "stale: 1 record(s) made with other code; rerun to refresh" in md
    assert "stale: 1 record(s)" in format_table(d)
    # the method's code changed since: every record of it is stale, none is ranked
    text = format_table(d, current_fingerprints={"finetune": "f2"})
    assert "stale: 3 record(s) made with other code; rerun to refresh" in text and "finetune " not in text
    _, wb = leaderboard_rows(d, current_fingerprints={"finetune": "f2"})
    assert wb == []
