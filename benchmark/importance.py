"""Per-parameter importance estimates and output-layer surgery, shared by the weight-space methods.

- ``diag_fisher``: a diagonal Fisher estimate, the mean squared gradient of the
  cross-entropy with the true labels. Two granularities, because the references
  differ: SSD squares the gradient of each *mini-batch* mean loss and averages
  over batches; Fisher forgetting (Golatkar et al.) squares each *per-example*
  gradient (the empirical Fisher) and averages over examples.
- ``output_layer`` / ``resize_output``: the ``fc`` head, and a copy of it with
  more or fewer output rows (boundary expanding).

The network is put in eval mode while estimating (BatchNorm uses its running
statistics, dropout is off, and the estimate is deterministic) and restored after.
Gradients are taken with ``torch.autograd.grad`` / ``torch.func``, so no ``.grad``
field of the network is touched.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from benchmark.errors import BenchmarkError


def diag_fisher(net: nn.Module, batches: Iterable, *, per_sample: bool = False) -> dict[str, torch.Tensor]:
    """Mean squared gradient of the CE loss for every trainable parameter.

    Args:
        net: the network (its mode is restored afterwards).
        batches: batches with ``.x`` (network input) and ``.y`` (labels), e.g. ``module.iterate(stream)``.
        per_sample: square per-example gradients and average over examples (empirical Fisher);
            otherwise square each batch-mean gradient and average over batches (SSD).

    Returns:
        ``{name: tensor shaped like the parameter}`` over ``net.named_parameters()`` that require grad.
    """
    params = {k: p for k, p in net.named_parameters() if p.requires_grad}
    fixed = {k: p.detach() for k, p in net.named_parameters() if not p.requires_grad}
    acc = {k: torch.zeros_like(p) for k, p in params.items()}
    buffers = dict(net.named_buffers())

    def example_loss(theta: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(net, (theta, fixed, buffers), (x.unsqueeze(0),))
        return F.cross_entropy(out, y.unsqueeze(0))

    per_example_grads = vmap(grad(example_loss), in_dims=(None, 0, 0))
    was_training, count = net.training, 0
    net.eval()
    try:
        with torch.enable_grad():
            for b in batches:
                if per_sample:
                    grads = per_example_grads({k: p.detach() for k, p in params.items()}, b.x, b.y)
                    for k, g in grads.items():  # g: [B, *param.shape]
                        acc[k] += g.pow(2).sum(0)
                    count += len(b.y)
                else:
                    loss = F.cross_entropy(net(b.x), b.y)
                    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
                    for k, g in zip(params, grads, strict=True):
                        if g is not None:
                            acc[k] += g.pow(2)
                    count += 1
    finally:
        net.train(was_training)
    return {k: v / max(count, 1) for k, v in acc.items()}


def output_layer(net: nn.Module) -> nn.Linear:
    """The network's output layer, the ``nn.Linear`` named ``fc`` every model of the suite ends in."""
    fc = getattr(net, "fc", None)
    if not isinstance(fc, nn.Linear):
        raise BenchmarkError(
            f"{type(net).__name__} has no nn.Linear output layer named 'fc'; "
            "the method needs one (every model in benchmark.models has it)"
        )
    return fc


def resize_output(net: nn.Module, out_features: int, generator: torch.Generator | None = None) -> nn.Linear:
    """Replaces ``net.fc`` by a layer with ``out_features`` rows: existing rows are copied, new rows
    get nn.Linear's default initialisation (uniform in +-1/sqrt(fan_in)) drawn from ``generator``.
    Returns the new layer (same device, dtype and ``requires_grad``)."""
    old = output_layer(net)
    w = old.weight
    new = nn.Linear(old.in_features, out_features, bias=old.bias is not None, device=w.device, dtype=w.dtype)
    keep = min(out_features, old.out_features)
    bound = old.in_features**-0.5
    with torch.no_grad():
        new.weight.copy_(torch.empty(new.weight.shape, dtype=w.dtype).uniform_(-bound, bound, generator=generator))
        new.weight[:keep] = w[:keep]
        if old.bias is not None:
            new.bias.copy_(torch.empty(new.bias.shape, dtype=w.dtype).uniform_(-bound, bound, generator=generator))
            new.bias[:keep] = old.bias[:keep]
    new.requires_grad_(w.requires_grad)
    net.fc = new
    return new
