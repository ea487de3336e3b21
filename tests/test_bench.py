"""End to end on the embedded digits data: records, references, resume, RCD rows."""

from __future__ import annotations

import json
import sys

from benchmark.config import compose
from benchmark.results import read_results
from benchmark.runner import Runner
from tests.conftest import tiny_overrides

METHODS = "methods=[original,retrain,finetune,grad_ascent]"
REQUIRED = {"cell_id", "dataset", "model", "method", "scenario", "ratio", "seed", "split_hash",
            "protocol_version", "metrics", "config", "versions", "git", "directions"}


def test_bench_end_to_end_and_resume(tmp_path, capsys):
    cfg = compose(tiny_overrides(tmp_path, METHODS, "attack.max_steps=20"))
    records = Runner(cfg).run()
    first = capsys.readouterr().out
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    assert all(REQUIRED <= set(r) for r in records)
    by = {r["method"]: r["metrics"] for r in records}
    # retrain is its own reference; the original's UA is 100 minus its forget accuracy
    assert by["retrain"]["gap/avg"] == 0.0 and by["retrain"]["weight/dist_oracle"] == 0.0
    assert by["original"]["eval/ua"] == 100.0 - by["original"]["eval/forget/acc"]
    assert by["original"]["time/unlearn_s"] == 0.0 and by["original"]["weight/dist_original"] == 0.0
    assert by["original"]["relearn/sgd/rcd"] == 0.0 and by["retrain"]["relearn/sgd/rcd"] == 1.0
    assert all(r["split_hash"] == records[0]["split_hash"] for r in records)
    assert "original trained" in first and "oracle trained" in first
    out = tmp_path / "out"
    assert (out / "summary.json").exists() and list((out / "figures").glob("relearn-*.png"))
    assert len(list((out / "curves").glob("*.json"))) == 4
    # a second run: every cell is done, nothing is recomputed, the table is printed again
    again = Runner(compose(tiny_overrides(tmp_path, METHODS, "attack.max_steps=20"))).run()
    second = capsys.readouterr().out
    assert "(4 done already)" in second and "[1/" not in second
    assert [r["cell_id"] for r in again] == [r["cell_id"] for r in records]
    assert len(read_results(out)) == 4
    # a new method reuses the cached references
    Runner(compose(tiny_overrides(tmp_path, "methods=[original,finetune]", "method_args.finetune.lr=0.02",
                                  "attack.max_steps=20"))).run()
    third = capsys.readouterr().out
    assert "original reused from cache" in third and "oracle reused from cache" in third
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == len({json.loads(x)["cell_id"] for x in lines}) == 5


def test_user_method_from_own_module(tmp_path, monkeypatch, capsys):
    pkg = tmp_path / "lab"
    pkg.mkdir()
    (pkg / "my_unlearn.py").write_text(
        "from benchmark.losses import ce\n"
        "from benchmark.module import METHODS, UnlearnModule\n\n"
        "@METHODS.register('retain_ce_x2')\n"
        "class RetainCeX2(UnlearnModule):\n"
        "    def unlearn_step(self, batch):\n"
        "        b = batch['retain']\n"
        "        return {'loss': 2 * ce(self.net(b.x), b.y)}\n"
    )
    monkeypatch.syspath_prepend(str(pkg))
    cfg = compose(tiny_overrides(tmp_path, "imports=[my_unlearn]", "methods=[retain_ce_x2]",
                                 "method_args.retain_ce_x2.epochs=1", "attack.enabled=false"))
    records = Runner(cfg).run()
    assert records[0]["method"] == "retain_ce_x2" and records[0]["status"] == "ok"
    assert records[0]["hparams"]["epochs"] == 1
    sys.modules.pop("my_unlearn", None)


def test_evaluation_is_one_forward_pass_per_example(tmp_path, digits):
    """Each example of D, D_val and D_test goes through the network once; a cached model none."""
    import torch

    from benchmark.data.splits import make_split
    from benchmark.data.transforms import BatchTransform
    from benchmark.evaluate import cached_outputs, split_view
    from benchmark.models import build_model

    split = make_split(digits.train_y.numpy(), "random", 0.1, seed=0, train_subset=300)
    net = build_model("digits_mlp", 10, 1)
    seen: list[int] = []
    net.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    tf = BatchTransform(tuple(digits.mean), tuple(digits.std))
    path = tmp_path / "o.npz"
    full = cached_outputs(path, net, digits, split, tf, torch.device("cpu"), batch_size=64)
    assert sum(seen) == len(split.train) + len(split.val) + len(digits.test_y)
    view = split_view(full, split)
    assert len(view["forget"].labels) + len(view["retain"].labels) == len(split.train)
    seen.clear()
    cached_outputs(path, net, digits, split, tf, torch.device("cpu"), batch_size=64)
    assert seen == []  # every metric reads the cache
