"""Outside models are first-class: a user's own network, checkpoint, normalisation and
split files go through the same benchmark as the suite's own references."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from benchmark.callbacks.relearn import relearning_levels
from benchmark.cli import main
from benchmark.data.transforms import BatchTransform, make_transform
from benchmark.errors import BenchmarkError
from benchmark.models import MODELS, build_model
from benchmark.module import METHODS, UnlearnData
from benchmark.training import fit
from tests.conftest import CPU_TRAINER

USER_MODULE = "outside_user_nets"  # what a user passes as imports=[...]
USER_MODEL = "outside_mlp"
MEAN, STD = (0.7,), (0.1,)  # the user's own normalisation, far from digits' statistics (0.31, 0.38)

NETS = f'''
"""A user's own network, registered under a name of their choosing."""
from torch import nn

from benchmark.models import MODELS


class OutsideMLP(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, hidden: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 64, hidden), nn.BatchNorm1d(hidden),
                                  nn.ReLU())
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.fc(self.body(x))


@MODELS.register("{USER_MODEL}")
def outside_mlp(num_classes: int, in_channels: int) -> nn.Module:
    return OutsideMLP(num_classes, in_channels)
'''


@pytest.fixture
def user_nets(tmp_path, monkeypatch):
    """Writes the user's module to a folder on sys.path (as PYTHONPATH would) and imports it;
    afterwards the registry forgets the model again, so no other test sees it."""
    folder = tmp_path / "userpkg"
    folder.mkdir()
    (folder / f"{USER_MODULE}.py").write_text(NETS)
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop(USER_MODULE, None)
    module = __import__(USER_MODULE)
    yield module
    MODELS._items.pop(USER_MODEL, None)
    sys.modules.pop(USER_MODULE, None)


def _normalise(x: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    """The user's own input pipeline: uint8 -> [0, 1] -> their mean/std."""
    return (x.float() / 255.0 - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def _train_plain(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 40) -> torch.nn.Module:
    """A plain PyTorch training script, nothing from the benchmark."""
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    net.train()
    for _ in range(epochs):
        for b in torch.randperm(len(y), generator=gen).split(64):
            loss = F.cross_entropy(net(_normalise(x[b])), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()  # as a user would hand it over


@torch.no_grad()
def _accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, mean=MEAN, std=STD) -> float:
    net.eval()
    return 100.0 * int((net(_normalise(x, mean, std)).argmax(1) == y).sum()) / len(y)


def _args(tmp_path: Path, *extra: str) -> list[str]:
    return ["run", "dataset=digits", f"model={USER_MODEL}", f"imports=[{USER_MODULE}]", "data.train_subset=null",
            "data.val_fraction=0", f"data.normalize.mean=[{MEAN[0]}]", f"data.normalize.std=[{STD[0]}]",
            "forget.scenario=indices", "seeds=[0]", "logger=none", "attack.enabled=false",
            f"output_dir={tmp_path}/out", f"cache_dir={tmp_path}/cache", *CPU_TRAINER, *extra]


def _user_split(digits, tmp_path: Path) -> tuple[np.ndarray, np.ndarray, Path, Path]:
    """The user's own forget and retain files (D_r a strict subset of the rest)."""
    order = np.random.default_rng(7).permutation(len(digits.train_y))
    forget, retain = np.sort(order[:40]), np.sort(order[40:440])
    np.save(tmp_path / "forget.npy", forget)
    (tmp_path / "retain.txt").write_text("\n".join(map(str, retain)))
    return forget, retain, tmp_path / "forget.npy", tmp_path / "retain.txt"


# --------------------------------------------------------------------- the acceptance test
@pytest.mark.slow
def test_outside_original_runs_through_the_benchmark(user_nets, digits, tmp_path, capsys):
    forget, retain, f_file, r_file = _user_split(digits, tmp_path)
    d = np.union1d(forget, retain)
    x, y = digits.train_x, digits.train_y
    torch.manual_seed(0)
    original = _train_plain(user_nets.OutsideMLP(10, 1), x[d], y[d])
    torch.manual_seed(0)
    oracle = _train_plain(user_nets.OutsideMLP(10, 1), x[retain], y[retain])
    torch.save({"state_dict": original.state_dict()}, tmp_path / "original.pt")  # wrapped
    torch.save(oracle.state_dict(), tmp_path / "oracle.pt")  # plain

    rc = main(_args(tmp_path, f"forget.indices_file={f_file}", f"forget.retain_file={r_file}",
                    f"reference.original={tmp_path / 'original.pt'}", f"reference.oracle={tmp_path / 'oracle.pt'}",
                    "methods=[original,retrain,finetune]", "method_args.finetune.epochs=1"))
    out = capsys.readouterr()
    assert rc == 0, (out.out + out.err)[-3000:]
    records = {r["method"]: r for r in map(json.loads, (tmp_path / "out" / "results.jsonl").read_text().splitlines())}
    assert {k: r["status"] for k, r in records.items()} == dict.fromkeys(("original", "retrain", "finetune"), "ok")

    m = records["original"]["metrics"]
    acc_f = _accuracy(original, x[forget], y[forget])
    assert acc_f > 90  # the outside original memorised its forget set
    assert m["eval/ua"] == pytest.approx(100.0 - acc_f, abs=1e-9)
    assert m["eval/ra"] == pytest.approx(_accuracy(original, x[retain], y[retain]), abs=1e-9)
    ta = _accuracy(original, digits.test_x, digits.test_y)
    assert m["eval/ta"] == pytest.approx(ta, abs=1e-9)
    # the equality is informative: with the dataset's own statistics the numbers would differ
    assert abs(_accuracy(original, digits.test_x, digits.test_y, digits.mean, digits.std) - ta) > 1
    # no D_val: its accuracy is undefined with a reason, never a crash or a silent number
    assert "eval/val/acc" in records["original"]["undefined"]
    assert m.get("eval/val/acc") is None
    # a brought oracle has no training time: RTE (and the retrain row's time) undefined, not a crash
    assert "time/rte" in records["finetune"]["undefined"]
    assert "time/unlearn_s" in records["retrain"]["undefined"]
    assert records["retrain"]["metrics"]["gap/avg"] == 0  # the brought oracle is the retrain row
    # both references are identified by their files' content
    assert all("-file-" in k for k in records["finetune"]["reference"].values())
    # the brought original was unlearned in train mode from a copy: the user's model is untouched
    assert _accuracy(original, x[forget], y[forget]) == acc_f


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["missing_key", "wrong_shape"])
def test_mismatched_checkpoint_exits_2_with_one_line(user_nets, digits, tmp_path, capsys, damage):
    _, _, f_file, r_file = _user_split(digits, tmp_path)
    state = user_nets.OutsideMLP(10, 1).state_dict()
    if damage == "missing_key":
        del state["fc.bias"]
    else:
        state = user_nets.OutsideMLP(10, 1, hidden=32).state_dict()
    torch.save(state, tmp_path / "bad.pt")
    rc = main(_args(tmp_path, f"forget.indices_file={f_file}", f"forget.retain_file={r_file}",
                    f"reference.original={tmp_path / 'bad.pt'}", "methods=[original,finetune]"))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"error: checkpoint {tmp_path / 'bad.pt'} does not match model '{USER_MODEL}'")
    assert ("missing keys [fc.bias]" if damage == "missing_key" else "shapes differ (checkpoint vs model) [body.1.weight [32, 64] vs [64, 64]") in err[0]
    assert "pass model=NAME" in err[0]


# --------------------------------------------------------------------- train mode
def test_a_network_that_arrives_in_eval_mode_unlearns_in_train_mode(tiny_data):
    """A checkpoint loaded elsewhere often arrives in eval mode; BatchNorm must still learn
    its statistics (and dropout be active) while unlearning. Needs ``self.train()`` (or
    ``self.net.train()``) in ``UnlearnModule.on_train_start``."""
    torch.manual_seed(0)
    net = build_model("digits_cnn", 10, 1).eval()
    before = copy.deepcopy(net.state_dict())
    modes: list[bool] = []
    net.register_forward_pre_hook(lambda mod, args: modes.append(mod.training))
    module = METHODS.get("finetune")(net, tiny_data, epochs=1, batch_size=64)
    fit(module, {"accelerator": "cpu", "devices": 1})
    assert modes and all(modes)  # every training forward pass ran in train mode
    bn = [k for k in before if k.endswith("running_mean")]
    assert bn and all(not torch.equal(before[k], module.net.state_dict()[k]) for k in bn)


# --------------------------------------------------------------------- normalisation
def _cfg(mean=None, std=None, crop_pad=0, flip=False):
    return OmegaConf.create({"data": {"normalize": {"mean": mean, "std": std},
                                      "augment": {"crop_pad": crop_pad, "flip": flip}}})


def test_make_transform_defaults_to_the_dataset_statistics(digits):
    tf = make_transform(_cfg(crop_pad=2, flip=True), digits)
    assert tf == BatchTransform(tuple(digits.mean), tuple(digits.std), 2, True)


def test_make_transform_applies_overrides_per_key(digits):
    assert make_transform(_cfg(mean=[0.25], std=[0.35]), digits) == BatchTransform((0.25,), (0.35,))
    only_mean = make_transform(_cfg(mean=[0]), digits)  # an int is a number too
    assert only_mean.mean == (0.0,) and only_mean.std == tuple(digits.std)
    x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    out = make_transform(_cfg(mean=[0.25], std=[0.35]), digits)(x, train=False)
    torch.testing.assert_close(out, (torch.tensor([[[[0.0, 1.0]]]]) - 0.25) / 0.35)


@pytest.mark.parametrize("mean,std,match", [
    ([0.5, 0.5], None, r"has 2 values but the images have 1 channel"),
    (0.5, None, r"is not a list"),
    ("0.5", None, r"is not a list"),
    (["a"], None, r"not a finite number"),
    ([float("nan")], None, r"not a finite number"),
    ([True], None, r"not a finite number"),
    (None, [0.0], r"must be > 0"),
    (None, [-1.0], r"must be > 0"),
])
def test_make_transform_rejects_bad_normalisation_in_one_line(digits, mean, std, match):
    with pytest.raises(BenchmarkError, match=match) as e:
        make_transform(_cfg(mean=mean, std=std), digits)
    assert "\n" not in str(e.value) and "data.normalize." in str(e.value)


# --------------------------------------------------------------------- relearning levels
def test_relearning_levels_match_a_hand_computation_and_leave_the_models_alone(digits):
    torch.manual_seed(0)
    a, b = build_model("digits_cnn", 10, 1), build_model("digits_cnn", 10, 1).eval()
    tf = BatchTransform(tuple(digits.mean), tuple(digits.std))
    x, y = digits.train_x[:50], digits.train_y[:50]
    sa, sb = copy.deepcopy(a.state_dict()), copy.deepcopy(b.state_dict())
    levels = relearning_levels(a, b, x, y, tf, delta=0.1)
    assert a.training and not b.training  # modes restored
    assert all(torch.equal(sa[k], a.state_dict()[k]) for k in sa)  # BatchNorm statistics included
    assert all(torch.equal(sb[k], b.state_dict()[k]) for k in sb)
    with torch.no_grad():
        outs = [m.eval()(tf(x, train=False)) for m in (a, b)]
    assert levels.loss_original == pytest.approx(float(F.cross_entropy(outs[0], y)), rel=1e-5)
    assert levels.loss_oracle == pytest.approx(float(F.cross_entropy(outs[1], y)), rel=1e-5)
    assert levels.acc_original == pytest.approx(100 * float((outs[0].argmax(1) == y).float().mean()))
    assert levels.acc_oracle == pytest.approx(100 * float((outs[1].argmax(1) == y).float().mean()))
    assert levels.delta == 0.1


def test_unlearn_data_from_user_files_is_what_the_files_say(digits, tmp_path):
    """The user's files define D_f and D_r exactly; D is their union."""
    from benchmark.data.splits import make_split

    forget, retain, f_file, r_file = _user_split(digits, tmp_path)
    s = make_split(digits.train_y.numpy(), "indices", None, 0, indices_file=str(f_file), retain_file=str(r_file),
                   val_fraction=0)
    np.testing.assert_array_equal(s.forget, forget)
    np.testing.assert_array_equal(s.retain, retain)
    np.testing.assert_array_equal(s.train, np.union1d(forget, retain))
    assert len(s.val) == 0
    data = UnlearnData(images=digits.train_x, labels=digits.train_y, forget=torch.as_tensor(s.forget),
                       retain=torch.as_tensor(s.retain), transform=make_transform(_cfg(), digits), num_classes=10)
    assert sorted(data.indices("all").tolist()) == sorted(np.union1d(forget, retain).tolist())
