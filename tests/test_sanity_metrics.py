"""What an honest benchmark must say about the sanity battery (docs/protocol.md s.3-4), on the real
digits configuration (the original memorises D_f there): rescaling the logits changes no prediction,
so the headline RCD_acc of a temperature-scaled original is 0 and its forgetting quality is no better
than the original's; no cheat is as close to the oracle's population as the oracle's own held-out
models or as SSD, an honest one-shot method, and every cheat's RCD_acc is far from the oracle's 1 in
the two-sided reading (a destroyed head is "hard to relearn", which the raw RCD would reward)."""

from __future__ import annotations

import json

import pytest

from benchmark.config import compose
from benchmark.runner import Runner

from .conftest import CPU_TRAINER

CHEATS = ("cheat_temp_0_5", "cheat_temp_0_3", "cheat_logit_shrink", "cheat_head_reinit", "cheat_weight_noise",
          "cheat_relabel_one_class")


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("sanity")
    cfg = compose(["dataset=digits", f"output_dir={tmp}/out", f"cache_dir={tmp}/cache", "logger=none",
                   *CPU_TRAINER, "eval.population.k=8", "attack.repeats=1",
                   f"methods=[original,retrain,ssd,{','.join(CHEATS)}]"])
    Runner(cfg).run()
    rows = [json.loads(line) for line in (tmp / "out" / "results.jsonl").read_text().splitlines()]
    return {r["method"]: r["metrics"] for r in rows if r["status"] == "ok"}


def test_every_row_is_scored(records):
    assert set(records) == {"original", "retrain", "ssd", *CHEATS}


@pytest.mark.parametrize("cheat", ["cheat_temp_0_5", "cheat_temp_0_3", "cheat_logit_shrink"])
def test_rescaled_logits_gain_nothing_on_the_new_metrics(records, cheat):
    m, orig = records[cheat], records["original"]
    assert m["eval/ua"] == orig["eval/ua"] == 0.0  # no prediction changed
    for a in ("sgd", "adam"):
        assert m[f"relearn/{a}/rcd_acc"] == 0.0  # the headline RCD: forgotten nothing
        assert m[f"relearn/{a}/rcd_acc_dist"] == 5.0  # as far from the oracle as the original
    assert m["pop/forget/quality"] <= orig["pop/forget/quality"]
    # the metrics the issue found gamed still are: the loss RCD and MIA-efficacy move (documented)
    assert m["relearn/sgd/rcd"] > 0 and m["eval/mia/efficacy"] > orig["eval/mia/efficacy"]


@pytest.mark.parametrize("cheat", CHEATS)
def test_no_cheat_looks_like_the_oracle(records, cheat):
    m = records[cheat]
    assert m["pop/forget/quality"] < min(records["retrain"]["pop/forget/quality"], records["ssd"]["pop/forget/quality"])
    assert m["pop/forget/ulira_acc"] > records["retrain"]["pop/forget/ulira_acc"] + 10
    assert m["relearn/sgd/rcd_acc_dist"] > 0.5


def test_the_oracle_reference_line(records):
    r = records["retrain"]
    assert r["relearn/sgd/rcd_acc"] == 1.0 and r["relearn/sgd/rcd_acc_dist"] == 0.0 and r["gap/avg"] == 0.0
    assert 40 <= r["pop/forget/ulira_acc"] <= 60  # held-out oracles vs the oracles: near chance
    assert r["pop/forget/quality"] > records["original"]["pop/forget/quality"]
