"""The generative track (task=generate) on tiny settings: the sampler, the references, the
conformance of every generative method, RCD for generators, the config, and one tiny run
through the runner."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from benchmark.callbacks.relearn import Curve, Levels
from benchmark.config import compose
from benchmark.errors import BenchmarkError
from benchmark.generative.diffusion import Diffusion, ddim_sample, denoising_loss
from benchmark.generative.evaluation import SampleEval
from benchmark.generative.methods import GEN_METHODS, GenData
from benchmark.metrics import METRICS, MetricContext, compute_metrics
from benchmark.models import build_model, model_task
from benchmark.module import METHODS
from tests.conftest import CPU_TRAINER

DIFF = Diffusion(timesteps=50, num_classes=10, p_uncond=0.1)


def gen_overrides(tmp_path, *extra: str) -> list[str]:
    """task=generate shrunk: 300 images, 2-epoch references and evaluator, 4 samples per class,
    2 DDIM steps, a fixed 4-step attack with one repeat, one seed, no logger."""
    return ["dataset=digits", "task=generate", "data.train_subset=300", "data.recipe.epochs=2",
            "data.evaluator.recipe.epochs=2", "generate.samples_per_class=4", "generate.attack_samples=4",
            "generate.sample_steps=2", "generate.grid_per_class=2", "attack.budget=fixed", "attack.max_steps=4",
            "attack.repeats=1", "seeds=[0]", f"output_dir={tmp_path}/out", f"cache_dir={tmp_path}/cache",
            "logger=none", *CPU_TRAINER, *extra]


@pytest.fixture
def gen_net():
    torch.manual_seed(0)
    return build_model("digits_unet", 10, 1)


@pytest.fixture
def gen_data(digits):
    from benchmark.data.splits import make_split
    from benchmark.stages.generate import generator_transform

    split = make_split(digits.train_y.numpy(), "class", None, seed=0, train_subset=300, classes=[3])
    return GenData(images=digits.train_x, labels=digits.train_y, forget=torch.as_tensor(split.forget),
                   retain=torch.as_tensor(split.retain), transform=generator_transform(digits),
                   num_classes=10, scenario="class", forget_classes=[3], seed=0, diffusion=DIFF)


# ---- the model and the sampler ---------------------------------------------------------------

def test_generators_are_registered_models_of_their_own_task(gen_net):
    assert model_task("digits_unet") == model_task("unet32") == "generate"
    assert model_task("digits_mlp") == "classify"
    x, t, y = torch.randn(5, 1, 8, 8), torch.randint(0, 50, (5,)), torch.tensor([0, 3, 9, 10, 10])
    assert gen_net(x, t, y).shape == x.shape  # eps has the image's shape; label 10 is the null class
    big = build_model("unet32", 10, 3)
    assert big(torch.randn(2, 3, 32, 32), torch.tensor([0, 5]), torch.tensor([1, 10])).shape == (2, 3, 32, 32)


def test_a_label_never_trained_on_samples_as_the_null_class(gen_net):
    x, t = torch.randn(4, 1, 8, 8), torch.randint(0, 50, (4,))
    gen_net.eval()
    null = gen_net(x, t, torch.full((4,), 10))
    assert torch.equal(gen_net(x, t, torch.full((4,), 3)), null)  # untrained: every label is unseen
    gen_net.train()
    gen_net(x, t, torch.tensor([3, 3, 10, 10]))  # a training pass on label 3 adds it
    gen_net.eval()
    assert bool(gen_net.label_emb.seen[3]) and not bool(gen_net.label_emb.seen[4])
    assert not torch.equal(gen_net(x, t, torch.full((4,), 3)), null)
    assert torch.equal(gen_net(x, t, torch.full((4,), 4)), null)
    assert "label_emb.seen" in gen_net.state_dict()  # saved with the weights


def test_sampler_is_deterministic_per_seed(gen_net):
    labels = torch.tensor([0, 3, 3, 7, 10])
    a = ddim_sample(gen_net, DIFF, labels, (1, 8, 8), steps=4, guidance=2.0, seed=11)
    b = ddim_sample(gen_net, DIFF, labels, (1, 8, 8), steps=4, guidance=2.0, seed=11, batch_size=2)
    c = ddim_sample(gen_net, DIFF, labels, (1, 8, 8), steps=4, guidance=2.0, seed=12)
    assert torch.equal(a, ddim_sample(gen_net, DIFF, labels, (1, 8, 8), steps=4, guidance=2.0, seed=11))
    assert torch.allclose(a, b, atol=1e-5)  # the batch size does not change a sample
    assert not torch.allclose(a, c)
    assert a.shape == (5, 1, 8, 8) and a.min() >= -1 and a.max() <= 1
    assert gen_net.training  # put back in its mode


def test_denoising_loss_fixed_draws_and_per_example(gen_net):
    x, y = torch.rand(6, 1, 8, 8) * 2 - 1, torch.arange(6)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    one = denoising_loss(gen_net, DIFF, x, y, generator=g())
    per = denoising_loss(gen_net, DIFF, x, y, generator=g(), reduction="none")
    assert per.shape == (6,) and torch.allclose(per.mean(), one)
    assert float(one.detach()) == float(denoising_loss(gen_net, DIFF, x, y, generator=g()).detach())


# ---- references ------------------------------------------------------------------------------

def test_oracle_generator_never_saw_the_forgotten_class(tmp_path, digits, monkeypatch):
    from benchmark.data.splits import make_split
    from benchmark.generative.methods import DenoisingTraining
    from benchmark.reference import get_reference
    from benchmark.stages.generate import generator_transform

    cfg = compose(gen_overrides(tmp_path, "data.recipe.epochs=1"))
    seen: dict[str, set[int]] = {}
    step = DenoisingTraining.unlearn_step

    def spy(self, batch):
        seen.setdefault(self.data._kind, set()).update(batch["retain"].y.tolist())
        return step(self, batch)

    monkeypatch.setattr(DenoisingTraining, "unlearn_step", spy)
    split = make_split(digits.train_y.numpy(), "class", None, seed=0, train_subset=300, classes=[3])
    init = GenData.__init__

    for kind in ("original", "oracle"):
        def tagged(self, *a, _kind=kind, **k):
            init(self, *a, **k)
            self._kind = _kind

        monkeypatch.setattr(GenData, "__init__", tagged)
        ref = get_reference(kind, cfg, digits, split, generator_transform(digits), 0)
        assert not ref.cached and ref.key.startswith(kind)
        # the generator's own record of the labels it trained on (a never-seen label reads as the null class)
        assert bool(ref.net.label_emb.seen[3]) == (kind == "original")
    assert 3 not in seen["oracle"] and seen["oracle"] == set(range(10)) - {3}
    assert 3 in seen["original"]
    again = get_reference("oracle", cfg, digits, split, generator_transform(digits), 0)
    assert again.cached  # the same reference cache as classifiers


# ---- every generative method -----------------------------------------------------------------

@pytest.mark.parametrize("name", GEN_METHODS.names())
def test_generative_method_conforms(name, gen_net, gen_data):
    from benchmark import hparams
    from benchmark.training import fit

    cls = GEN_METHODS.get(name)
    hparams.validate_search_space(name, cls)
    kw = {k: v for k, v in hparams.signature_defaults(cls).items()}
    if cls.uses_recipe:
        kw = {"reinit": True, "epochs": 1, "lr": 1e-3, "optimizer": "adam", "batch_size": 32}
    kw.update({k: v for k, v in {"epochs": 1, "batch_size": 32}.items() if k in kw})
    before = {k: v.clone() for k, v in gen_net.state_dict().items()}
    torch.manual_seed(0)
    module = cls(copy.deepcopy(gen_net), gen_data, **kw)
    fit(module, {"accelerator": "cpu", "devices": 1})
    after = module.net.state_dict()
    assert set(after) == set(before) and all(after[k].shape == before[k].shape for k in before)
    changed = any(not torch.equal(before[k], after[k]) for k in before)
    if name == "original":
        assert not changed
    else:
        loss = module.trainer.callback_metrics.get("unlearn/loss")
        assert loss is not None and torch.isfinite(loss)
        assert changed, f"{name} left every weight unchanged"
    x = ddim_sample(module.net, DIFF, torch.tensor([3, 4]), (1, 8, 8), steps=2, seed=0)
    assert torch.isfinite(x).all()


def test_generative_registry_has_the_issue_methods_and_declares_the_others():
    assert {"retrain", "finetune", "grad_ascent", "salun", "esd", "ieu", "original"} <= set(GEN_METHODS.names())
    assert set(GEN_METHODS.names()).isdisjoint({"scrub", "ssd", "boundary_shrink"})
    assert "esd" not in METHODS  # the classifier registry is untouched


# ---- metrics and RCD for generators ----------------------------------------------------------

def _samples(acc: dict[int, float]) -> SampleEval:
    return SampleEval(acc, [3], fid=12.5, kid=0.25)


def test_sample_metrics_and_gaps_by_hand():
    acc = {c: 100.0 for c in range(10)} | {3: 80.0, 5: 70.0}
    oracle = {c: 100.0 for c in range(10)} | {3: 2.0}
    octx = MetricContext(outputs={}, forget_classes=[3], num_classes=10, samples=_samples(oracle))
    ov, _ = compute_metrics(octx)
    ctx = MetricContext(outputs={}, forget_classes=[3], num_classes=10, samples=_samples(acc), oracle_values=ov)
    v, _ = compute_metrics(ctx)
    assert v["gen/forget/acc"] == 80.0 and v["gen/remain/acc"] == pytest.approx((8 * 100 + 70) / 9)
    assert v["gen/remain/acc_min"] == 70.0 and v["gen/remain/fid"] == 12.5 and v["gen/remain/kid"] == 0.25
    assert v["gen/gap/forget_acc"] == 78.0 and v["gen/gap/remain_acc"] == pytest.approx(30 / 9)
    assert v["gen/gap/avg"] == pytest.approx((78.0 + 30 / 9) / 2)
    assert "eval/ua" not in v and "gap/avg" not in v  # no classifier outputs: no classifier metrics


def _curve(steps, acc, loss, max_steps):
    return Curve(steps=steps, loss=loss, acc=acc, weight_dist=[0.0] * len(steps), max_steps=max_steps)


def test_rcd_for_generators_against_hand_made_curves():
    # A_o = 100 (the original's samples of class 3), A_r = 2 (the oracle's); A* = 100 - 0.05 * 98 = 95.1
    levels = Levels(loss_original=0.10, loss_oracle=0.30, acc_original=100.0, acc_oracle=2.0)
    steps = [0, 10, 20, 30, 40]
    oracle = {"sgd": [_curve(steps, [2, 40, 96, 99, 100], [0.3, 0.2, 0.12, 0.105, 0.1], 40)],
              "adam": [_curve(steps, [2, 97, 100, 100, 100], [0.3, 0.1, 0.1, 0.1, 0.1], 40)]}
    model = {"sgd": [_curve(steps, [0, 0, 10, 50, 95.2], [0.5, 0.4, 0.3, 0.2, 0.11], 40)],
             "adam": [_curve(steps, [0, 0, 0, 0, 0], [0.5, 0.5, 0.5, 0.5, 0.5], 40)]}
    ctx = MetricContext(outputs={}, forget_classes=[3], num_classes=10, samples=_samples({c: 0.0 for c in range(10)}),
                        curves=model, oracle_curves=oracle, levels=levels)
    v, why = compute_metrics(ctx)
    assert v["relearn/sgd/rcd_acc"] == pytest.approx(40 / 20)  # T_acc 40 (95.2 >= 95.1) over the oracle's 20
    assert v["relearn/sgd/rcd"] == pytest.approx(40 / 30)  # loss: L* = 0.11; 0.11 at 40 vs 0.105 at 30
    assert v["relearn/adam/rcd_acc"] == pytest.approx(40 / 10)  # censored at the budget: a lower bound
    assert set(METRICS.get("relearn/{attacker}/rcd_acc").keys(["sgd", "adam"])) <= set(v)


def test_generator_attack_never_changes_its_model(gen_net, digits):
    from benchmark.callbacks.relearn import relearn
    from benchmark.generative.evaluation import Evaluator
    from benchmark.generative.relearn import GenRelearnTarget, generator_levels
    from benchmark.models import trainable_state
    from benchmark.stages.generate import generator_transform

    torch.manual_seed(1)
    judge = Evaluator(build_model("digits_cnn", 10, 1).eval(), generator_transform(digits), "k", 0.0, 0.0)
    f = (digits.train_y == 3).nonzero().flatten()[:20]
    target = GenRelearnTarget(digits.train_x[f], digits.train_y[f], digits.train_x[f], digits.train_y[f],
                              generator_transform(digits), DIFF, judge, [3], 4, {"sample_steps": 2, "guidance": 1.0},
                              seed=0)
    before = {k: v.clone() for k, v in gen_net.state_dict().items()}
    levels = generator_levels(gen_net, copy.deepcopy(gen_net), target, torch.device("cpu"))
    curve = relearn(gen_net, target, "adam", {"lr": 1e-3, "batch_size": 8}, 6, 2, 0, torch.device("cpu"),
                    trainable_state(gen_net))
    again = relearn(gen_net, target, "adam", {"lr": 1e-3, "batch_size": 8}, 6, 2, 0, torch.device("cpu"),
                    trainable_state(gen_net))
    assert all(torch.equal(before[k], v) for k, v in gen_net.state_dict().items())
    assert curve.steps == [0, 2, 4, 6] and curve.loss == again.loss and curve.acc == again.acc
    assert curve.loss[0] == pytest.approx(levels.loss_original) and curve.acc[0] == levels.acc_original
    assert curve.weight_dist[0] == 0.0 and curve.weight_dist[-1] > 0


# ---- config ----------------------------------------------------------------------------------

def test_config_task_generate_layers_and_one_line_errors(tmp_path):
    cfg = compose(gen_overrides(tmp_path))
    assert cfg.model == "digits_unet" and cfg.data.recipe.optimizer == "adam" and cfg.data.diffusion.timesteps
    assert cfg.forget.scenario == "class" and list(cfg.forget.classes) == [3]
    assert "grad_ascent" not in cfg.method_args  # the classifiers' digits overrides do not apply
    plain = compose(["dataset=digits", f"output_dir={tmp_path}/o", f"cache_dir={tmp_path}/c"])
    assert plain.task == "classify" and "diffusion" not in plain.data and plain.model == "digits_mlp"
    bad = {"methods=[scrub]": "no generative version", "model=digits_mlp": "task=generate",
           "forget.scenario=random": "forget.scenario", "generate.sample_steps=0": "generate.sample_steps",
           "task=draw": "task"}
    for override, words in bad.items():
        with pytest.raises(BenchmarkError) as e:
            compose(gen_overrides(tmp_path, override))
        assert words in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(BenchmarkError, match="configs/generate/svhn.yaml"):
        compose(["dataset=svhn", "task=generate", f"output_dir={tmp_path}/o", f"cache_dir={tmp_path}/c"])


# ---- one tiny run through the runner ---------------------------------------------------------

def test_generative_bench_end_to_end(tmp_path, capsys):
    from benchmark.runner import Runner

    cfg = compose(gen_overrides(tmp_path, "methods=[original,retrain,grad_ascent]",
                                "method_args.grad_ascent.epochs=1"))
    records = Runner(cfg).run()
    out = capsys.readouterr().out
    assert [r["status"] for r in records] == ["ok"] * 3, [r.get("error") for r in records]
    by = {r["method"]: r for r in records}
    assert by["retrain"]["metrics"]["gen/gap/avg"] == 0.0 and by["original"]["metrics"]["time/unlearn_s"] == 0.0
    for r in records:
        m = r["metrics"]
        assert {"gen/forget/acc", "gen/remain/acc", "gen/remain/fid", "gen/remain/kid", "relearn/sgd/rcd_acc",
                "relearn/adam/rcd_acc"} <= set(m)
        assert r["directions"]["gen/forget/acc"] == "oracle" and r["reference"]["evaluator"].startswith("evaluator-")
        assert set(r["samples"]["class_acc"]) == {str(c) for c in range(10)}
        assert r["config"]["task"] == "generate" and r["model"] == "digits_unet"
    figs = {p.name for p in (tmp_path / "out" / "figures").glob("samples-*.png")}
    assert {"samples-digits-class-s0.png", "samples-digits-class-s0-original.png",
            "samples-digits-class-s0-grad_ascent_epochs_1_.png"} <= figs, figs
    assert "[gen] original: evaluator accuracy per class" in out and "FgtAcc" in out
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["method"] == "original"
    from benchmark.report import write_leaderboard

    write_leaderboard(tmp_path / "out")  # the report: the table's generative columns and each method's grid
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "FgtAcc" in md and "RCD-adam" in md and "samples-digits-class-s0-grad_ascent_epochs_1_.png" in md
