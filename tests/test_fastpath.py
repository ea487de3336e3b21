"""The fast path: device-resident batches in the DataLoader's order, no host sync per step,
the cheaper attack (same T with early stop), trainer options, progress and the estimate."""

from __future__ import annotations

import copy
import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from benchmark.callbacks.relearn import (
    RelearnTarget,
    _evaluate,
    _ForgetEval,
    convergence_step,
    relearn,
)
from benchmark.data.transforms import BatchTransform
from benchmark.models import build_model, trainable_state
from benchmark.module import UnlearnData, UnlearnModule, make_loader
from benchmark.training import ProgressLine, build_trainer

ROOT = Path(__file__).resolve().parents[1]


class RetainCE(UnlearnModule):
    def unlearn_step(self, batch):
        b = batch["retain"]
        return {"loss": F.cross_entropy(self.net(b.x), b.y)}


def _data(n=200, shape=(1, 8, 8), aug=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    tf = BatchTransform((0.5,) * shape[0], (0.25,) * shape[0], 1 if aug else 0, aug)
    return UnlearnData(x, y, torch.arange(20), torch.arange(20, n), tf, 10, seed=seed)


@pytest.mark.parametrize(("n", "bs", "shuffle"), [(40, 8, True), (37, 8, True), (37, 8, False), (5, 8, True)])
def test_batches_follow_the_dataloader_order_and_draws(n, bs, shuffle):
    """The index batches and every later random number are those of DataLoader(RandomSampler)."""
    data = _data()
    idx = torch.randperm(200, generator=torch.Generator().manual_seed(1))[:n]
    gen = torch.Generator().manual_seed(7) if shuffle else None
    ref = DataLoader(idx.tolist(), batch_size=bs, shuffle=shuffle, generator=gen,
                     collate_fn=lambda items: torch.as_tensor(items))
    new = make_loader(data, idx, bs, shuffle, seed=7)
    for trial in range(3):
        torch.manual_seed(trial)
        a, ra = [b.tolist() for b in ref], torch.rand(1)
        torch.manual_seed(trial)
        b, rb = [b.idx.tolist() for b in new], torch.rand(1)
        assert a == b and torch.equal(ra, rb)
    if shuffle:
        assert torch.equal(gen.get_state(), new.generator.get_state())
    assert len(new) == len(ref)
    batch = next(iter(new))
    assert torch.equal(batch.x, data.images[batch.idx]) and torch.equal(batch.y, data.labels[batch.idx])


def test_distributed_shards_are_those_of_the_distributed_sampler():
    from torch.utils.data.distributed import DistributedSampler

    data = _data()
    data.world = 3
    idx = torch.arange(20, 120)
    for rank in range(3):
        data.rank = rank
        loader = make_loader(data, idx, 8, True, seed=0)
        loader.sampler.set_epoch(2)
        ref = DistributedSampler(list(range(len(idx))), num_replicas=3, rank=rank, shuffle=True, seed=0)
        ref.set_epoch(2)
        assert torch.cat([b.idx for b in loader]).tolist() == idx[list(ref)].tolist()
        assert len(loader) == -(-len(ref) // 8)


def _fit(module, **tc):
    trainer = build_trainer({"accelerator": "cpu", "devices": 1, **tc}, module.total_epochs)
    trainer.fit(module)
    return module


class NaNAt(RetainCE):
    def unlearn_step(self, batch):
        out = super().unlearn_step(batch)
        if self.global_step == 7:
            out["loss"] = out["loss"] * float("nan")
        return out


def test_a_non_finite_step_fails_the_fit_with_its_step_range():
    m = NaNAt(build_model("digits_mlp", 10, 1), _data(), epochs=3, batch_size=16)
    with pytest.raises(FloatingPointError, match=r"non-finite loss at a step in 1\.\.10"):
        _fit(m, log_every_n_steps=10)


def test_no_host_read_per_step():
    """On the CPU: reads of tensor values (item, bool, float, tolist) happen on logging steps
    and at the end, not once per step (on a GPU each would be a host sync)."""
    from torch.overrides import TorchFunctionMode

    reads = {"n": 0}
    names = {"item", "__bool__", "__float__", "__int__", "tolist"}

    class Count(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") in names:
                reads["n"] += 1
            return func(*args, **(kwargs or {}))

    m = RetainCE(build_model("digits_mlp", 10, 1), _data(n=400), epochs=4, batch_size=16)  # 96 steps
    with Count():
        _fit(m, log_every_n_steps=1000)
    assert reads["n"] < 10, reads


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: torch.cuda.set_sync_debug_mode")
@pytest.mark.parametrize("aug", [False, True])
def test_no_cuda_sync_per_step(aug):
    """Every step after the first two runs under set_sync_debug_mode("error"): a per-step
    .item(), bool() or pageable host-to-device copy raises."""
    import lightning as L

    class NoSync(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 2:
                torch.cuda.set_sync_debug_mode("error")

        def on_train_end(self, trainer, pl_module):
            torch.cuda.set_sync_debug_mode(0)

    m = RetainCE(build_model("cnn32", 10, 3), _data(n=600, shape=(3, 32, 32), aug=aug), epochs=1, batch_size=32)
    trainer = build_trainer({"accelerator": "gpu", "devices": 1, "log_every_n_steps": 1000}, 1, [NoSync()])
    try:
        trainer.fit(m)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert m.trainer.global_step == 18


def _target(n=48, aug=False):
    d = _data(n=n, aug=aug)
    return RelearnTarget(d.images, d.labels, d.images, d.labels, d.transform)


def test_forget_evaluation_equals_the_reference_evaluation():
    t = _target(n=2100)
    net = build_model("digits_mlp", 10, 1)
    loss, acc = _evaluate(net, t.eval_x, t.eval_y, t.transform, torch.device("cpu"))
    s, c = _ForgetEval(t.eval_x, t.eval_y, t.transform, torch.device("cpu"))(net).tolist()
    assert s / 2100 == loss and 100.0 * int(c) / 2100 == acc  # bit for bit


def test_early_stop_keeps_T_and_marks_the_curve():
    torch.manual_seed(0)
    net = build_model("digits_mlp", 10, 1)
    t = _target(aug=True)
    cfg = {"lr": 0.05, "momentum": 0.9, "batch_size": 16}
    full = relearn(net, t, "sgd", dict(cfg), 60, 2, 0, torch.device("cpu"), trainable_state(net))
    from benchmark.callbacks.relearn import Levels

    # L* = the loss at step 20, A* = 0 (met at once): the tail starts when both are met
    levels = Levels(full.loss[10], full.loss[10], 0.0, 0.0)
    cut = relearn(net, t, "sgd", dict(cfg), 60, 2, 0, torch.device("cpu"), trainable_state(net),
                  levels=levels, stop_after_tail=4)
    T, censored = convergence_step(full, levels)
    assert not censored and T + 4 < 60 and convergence_step(cut, levels) == (T, False)
    assert convergence_step(cut, levels, "acc") == (0, False)
    assert cut.truncated and not full.truncated and cut.steps[-1] == min(60, T + 4)
    k = len(cut.steps)
    assert cut.loss == full.loss[:k] and cut.steps == full.steps[:k]


def test_channels_last_and_bf16_match_the_default_on_cpu():
    net0 = build_model("digits_cnn", 10, 1)
    base = _fit(RetainCE(copy.deepcopy(net0), _data(), epochs=2, batch_size=16))
    ref = base.net.state_dict()
    cl = _fit(RetainCE(copy.deepcopy(net0), _data(), epochs=2, batch_size=16), channels_last=True)
    for k, v in cl.net.state_dict().items():
        assert torch.allclose(v, ref[k], atol=1e-5), k
        assert v.is_contiguous()  # undone after training
    bf = _fit(RetainCE(copy.deepcopy(net0), _data(), epochs=2, batch_size=16), precision="bf16-mixed")
    dist = sum((v.float() - ref[k]).norm() ** 2 for k, v in bf.net.state_dict().items()
               if v.is_floating_point()) ** 0.5
    assert torch.isfinite(dist) and dist < 0.5 * sum(v.norm() ** 2 for v in ref.values()
                                                       if v.is_floating_point()) ** 0.5


@pytest.mark.slow
def test_compile_matches_eager_on_cpu():
    pytest.importorskip("torch._inductor")
    net0 = build_model("digits_mlp", 10, 1)
    eager = _fit(RetainCE(copy.deepcopy(net0), _data(n=60), epochs=1, batch_size=20))
    comp = _fit(RetainCE(copy.deepcopy(net0), _data(n=60), epochs=1, batch_size=20), compile=True)
    ref = eager.net.state_dict()
    assert getattr(comp.net, "_compiled_call_impl", None) is None
    for k, v in comp.net.state_dict().items():
        assert torch.allclose(v, ref[k], atol=1e-5), k


def test_progress_line_is_silent_off_a_terminal_and_shows_an_eta_on_one():
    quiet = io.StringIO()
    line = ProgressLine("x", stream=quiet, after_s=0.0)
    line.update(5, 10)
    assert quiet.getvalue() == ""

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    line = ProgressLine("unlearn", stream=tty, after_s=0.0)
    line.update(5, 10)
    assert "[unlearn] 5/10 steps  ETA" in tty.getvalue()
    line.close()
    assert tty.getvalue().endswith("\r")


def test_estimate_prints_stages_and_the_cpu_hint(tmp_path, capsys, monkeypatch):
    from benchmark import estimate
    from benchmark.config import compose
    from benchmark.runner import Runner
    from tests.conftest import tiny_overrides

    runner = Runner(compose(tiny_overrides(tmp_path, "methods=[original,finetune]")))
    stages = estimate.print_estimate(runner.cfg, runner.plan, runner.ds, torch.device("cpu"))
    out = capsys.readouterr().out
    assert set(stages) == {"references", "unlearning", "attacks", "evaluation"} and "[estimate]" in out
    assert "PRESET=cifar10_cpu" not in out
    monkeypatch.setattr(estimate, "measure", lambda *a, **k: estimate.StepCost(1.0, 1.0))
    estimate.print_estimate(runner.cfg, runner.plan, runner.ds, torch.device("cpu"))
    out = capsys.readouterr().out
    assert "PRESET=cifar10_cpu" in out and "trainer.accelerator=gpu" in out


def test_gpu_check_script_parses():
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu_check.sh")], check=True)


@pytest.mark.slow  # ~110 s on a busy 2-core CPU
def test_gpu_check_dry_run_passes(tmp_path):
    script = ROOT / "scripts" / "gpu_check.sh"
    out = subprocess.run(["bash", str(script), "--dry-run"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env={**__import__("os").environ, "GPU_CHECK_OUT": str(tmp_path)})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "summary" in out.stdout


def test_bench_attack_times_old_and_new_attacks_with_the_same_t(tmp_path):
    """scripts/bench_attack.py on a tiny digits run: every model x attacker x variant is timed, and
    the full-curve T values of the old and the new code agree (the measurement's premise)."""
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    from tests.conftest import tiny_overrides

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_attack.py"), *tiny_overrides(tmp_path),
                          "--steps", "12", "--old", "HEAD", "--threads", "1"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith(("original ", "oracle "))]
    assert len(rows) == 2 * 2 * 3  # models x attackers x (old, new, new+tail)
    t = {(r[0], r[1], r[2]): (r[5], r[6]) for r in rows}
    for model in ("original", "oracle"):
        for attacker in ("sgd", "adam"):
            assert t[(model, attacker, "old")] == t[(model, attacker, "new")] == t[(model, attacker, "new+tail")]
    assert "new+tail / old = " in out.stdout
