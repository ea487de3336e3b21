"""The results layer: a defensive reader, a locked atomic writer, and the one grouping."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import filelock
import pytest

from benchmark.metrics import t_critical
from benchmark.results import (
    RESULTS,
    append_record,
    load_table,
    read_records,
    store,
    summarize_rows,
    table_titles,
)
from benchmark.results.table import metric_summary


def _rec(cell_id: str, **over) -> dict:
    rec = {"cell_id": cell_id, "dataset": "digits", "model": "cnn", "method": "finetune", "scenario": "random",
           "ratio": 0.1, "seed": 0, "status": "ok", "metrics": {"gap/avg": 1.0}, "time": 100.0,
           "config": {"cell": {"method_args": {}}}}
    rec.update(over)
    return rec


def _line(rec: dict) -> bytes:
    return (json.dumps(rec) + "\n").encode()


# ---------------------------------------------------------------------------- reading
def test_damaged_lines_are_skipped_with_their_line_number(tmp_path: Path):
    data = (_line(_rec("a")) + b"\xff\xfe not utf-8 \x80\n" + b"42\n" + b"\n" + b"{broken\n"
            + _line({"no": "cell id"}) + _line(_rec("b", seed=1)))
    (tmp_path / RESULTS).write_bytes(data)
    read = read_records(tmp_path)
    assert [r["cell_id"] for r in read.records] == ["a", "b"]
    assert read.skipped_lines == [2, 3, 5, 6]
    assert len(read.warnings) == 4 and all("\n" not in w for w in read.warnings)
    assert "line 2 is not UTF-8" in read.warnings[0]
    assert "line 3 is a JSON int, not a record" in read.warnings[1]
    assert "line 5 is not JSON" in read.warnings[2] and "line 6 has no cell_id" in read.warnings[3]


def test_a_duplicated_cell_counts_once_the_newest(tmp_path: Path):
    newer, older = _rec("a", metrics={"gap/avg": 2.0}, time=200.0), _rec("a", metrics={"gap/avg": 1.0}, time=100.0)
    (tmp_path / RESULTS).write_bytes(_line(newer) + _line(older) + _line(older) + _line(_rec("b", seed=1)))
    read = read_records(tmp_path)
    assert len(read) == 2 and read.records[0]["metrics"]["gap/avg"] == 2.0
    assert read.duplicates == {"a": 2} and "cell a appears on 3 lines; counted once" in read.warnings[0]
    rows = summarize_rows(load_table(read))
    assert list(rows["n"]) == [2] and metric_summary(rows.iloc[0].to_dict(), "gap/avg")["mean"] == 1.5


def test_missing_file_reads_as_no_records(tmp_path: Path):
    read = read_records(tmp_path / "nowhere")
    assert read.records == [] and read.warnings == []


# ---------------------------------------------------------------------------- writing
def test_append_replaces_the_same_cell_and_keeps_other_lines(tmp_path: Path):
    (tmp_path / RESULTS).write_bytes(b"\xff damaged\n" + _line(_rec("a")))
    append_record(tmp_path, _rec("b", seed=1, metrics={"gap/avg": float("nan")}))
    append_record(tmp_path, _rec("a", status="failed", time=300.0))
    lines = (tmp_path / RESULTS).read_bytes().splitlines()
    assert lines[0] == b"\xff damaged"  # what the writer cannot read it never destroys
    read = read_records(tmp_path)
    assert [(r["cell_id"], r["status"]) for r in read.records] == [("b", "ok"), ("a", "failed")]
    assert read.records[0]["metrics"]["gap/avg"] is None  # never a NaN in a record
    assert not list(tmp_path.glob(f".{RESULTS}.*"))  # no temporary file left behind


def test_the_lock_is_a_filelock_and_writers_wait_for_it(tmp_path: Path):
    assert isinstance(store.lock(tmp_path), filelock.BaseFileLock)
    held = filelock.FileLock(str(tmp_path / store.LOCK))
    held.acquire()
    writer = threading.Thread(target=append_record, args=(tmp_path, _rec("a")))
    writer.start()
    time.sleep(0.3)
    assert not (tmp_path / RESULTS).exists()  # blocked on the lock
    held.release()
    writer.join(timeout=10)
    assert [r["cell_id"] for r in read_records(tmp_path).records] == ["a"]


def test_concurrent_appends_lose_nothing(tmp_path: Path):
    def work(k: int) -> None:
        for i in range(8):
            append_record(tmp_path, _rec(f"w{k}-{i}", seed=i))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    read = read_records(tmp_path)
    assert len(read) == 32 and not read.warnings


def test_append_needs_a_cell_id(tmp_path: Path):
    from benchmark.errors import BenchmarkError

    with pytest.raises(BenchmarkError, match="cell_id"):
        append_record(tmp_path, {"status": "ok"})


# ---------------------------------------------------------------------------- the table
def test_stale_by_config_id_and_by_fingerprint():
    recs = [_rec("old", config_id="c1", time=1.0, code={"fingerprint": "f0"}),
            _rec("new", config_id="c1", time=2.0, code={"fingerprint": "f1"}),
            _rec("other", config_id="c2", seed=1, time=1.5, code={"fingerprint": "f1"})]
    df = load_table(recs)
    assert dict(zip(df["cell_id"], df["stale"], strict=True)) == {"old": True, "new": False, "other": False}
    df = load_table(recs, current_fingerprints={"finetune": "f1"})
    assert dict(zip(df["cell_id"], df["stale"], strict=True)) == {"old": True, "new": False, "other": False}
    df = load_table(recs, current_fingerprints={"finetune": "f2", "retrain": "f1"})
    assert df["stale"].all()
    assert summarize_rows(df).empty  # stale records are never pooled


def test_old_records_get_fallback_keys_that_never_pool_different_args():
    recs = [_rec("a0", config={"cell": {"method_args": {"alpha": 1}}}),
            _rec("a1", seed=1, config={"cell": {"method_args": {"alpha": 1}}}),
            _rec("b0", config={"cell": {"method_args": {"alpha": 2}}}),
            _rec("c0", model="resnet")]
    df = load_table(recs)
    assert df["table_key"].nunique() == 2 and df["row_key"].nunique() == 3
    assert list(df["label"]) == ["finetune{alpha=1}", "finetune{alpha=1}", "finetune{alpha=2}", "finetune"]
    rows = summarize_rows(df)
    assert sorted(rows["n"]) == [1, 1, 2]
    assert sorted(table_titles(df).values()) == ["digits / cnn / random / ratio 0.1",
                                                 "digits / resnet / random / ratio 0.1"]


def test_summarize_rows_matches_summarize():
    recs = [_rec(f"s{s}", seed=s, metrics={"gap/avg": v, "eval/ra": None}) for s, v in enumerate([1.0, 2.0, 4.0])]
    row = summarize_rows(load_table(recs)).iloc[0].to_dict()
    s = metric_summary(row, "gap/avg")
    assert row["n"] == 3 and row["seeds"] == [0, 1, 2]
    assert s["mean"] == pytest.approx(7 / 3) and s["n"] == 3
    assert s["half_width"] == pytest.approx(t_critical(2) * s["std"] / 3**0.5)
    assert metric_summary(row, "eval/ra")["n"] == 0 and metric_summary(row, "eval/ra")["n_missing"] == 3


def test_t_critical_is_scipy():
    assert t_critical(1) == pytest.approx(12.706204736, abs=1e-8)
    assert t_critical(100) == pytest.approx(1.983971519, abs=1e-8)
