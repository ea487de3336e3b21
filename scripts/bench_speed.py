"""Speed of the unlearning loop: UnlearnModule under Lightning vs a plain PyTorch loop.

Same network, data, batch size, optimiser and number of steps; prints images/s and
ms/step of each and the ratio. Usage:

    python scripts/bench_speed.py [--model digits_mlp|cnn32|resnet18] [--steps 200] [--batch 128]

On a GPU pass --device cuda (the module then runs under a Lightning GPU trainer).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import baselines  # noqa: F401
from benchmark.data.transforms import BatchTransform
from benchmark.models import build_model
from benchmark.module import METHODS, UnlearnData
from benchmark.training import fit


def data_for(model: str, n: int) -> tuple[torch.Tensor, torch.Tensor, BatchTransform]:
    g = torch.Generator().manual_seed(0)
    shape = (n, 1, 8, 8) if model.startswith("digits") else (n, 3, 32, 32)
    x = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    c = shape[1]
    return x, y, BatchTransform((0.5,) * c, (0.25,) * c)


def plain_loop(net, x, y, tf, steps, bs, device) -> float:
    net = net.to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(0)
    done = 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    while done < steps:
        for idx in torch.randperm(len(y), generator=g).split(bs):
            xb = tf(x[idx].to(device), train=True)
            loss = F.cross_entropy(net(xb), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done >= steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def lightning_loop(net, x, y, tf, steps, bs, device) -> float:
    n = len(y)
    idx = torch.arange(n)
    data = UnlearnData(images=x, labels=y, forget=idx[:1], retain=idx, transform=tf, num_classes=10)
    epochs = max(1, round(steps * bs / n))
    module = METHODS.get("finetune")(net, data, epochs=epochs, batch_size=bs, scheduler="constant")
    acc = "gpu" if device.type == "cuda" else "cpu"
    return fit(module, {"accelerator": acc, "devices": 1}), epochs * -(-n // bs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="cnn32")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    n = a.batch * 10
    x, y, tf = data_for(a.model, n)
    torch.manual_seed(0)
    net = build_model(a.model, 10, x.shape[1])
    plain_loop(build_model(a.model, 10, x.shape[1]), x, y, tf, 5, a.batch, device)  # warm-up
    t_plain = plain_loop(net, x, y, tf, a.steps, a.batch, device)
    torch.manual_seed(0)
    t_light, steps_light = lightning_loop(build_model(a.model, 10, x.shape[1]), x, y, tf, a.steps, a.batch, device)
    for name, t, s in (("plain PyTorch loop", t_plain, a.steps), ("UnlearnModule + Lightning", t_light, steps_light)):
        print(f"{name:<28} {s:>5} steps  {1000 * t / s:8.2f} ms/step  {s * a.batch / t:10.0f} images/s")
    print(f"overhead: {t_light / steps_light / (t_plain / a.steps):.2f}x the plain loop per step "
          f"({a.model}, batch {a.batch}, {device}, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
