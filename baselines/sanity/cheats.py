"""Cheats of the sanity battery: changes that look like unlearning to a careless metric.

Temperature scaling and logit shrinkage lower the model's confidence without changing
a single prediction; re-initialising the head or drowning the weights in noise destroy
the model rather than unlearn; relabelling D_f to one class makes the forget set
"wrong" in a way no retrained model is. An honest benchmark ranks each of them at or
below the original model ``original`` on the forgetting-utility trade-off and never
near the retrained oracle. All are ``sanity = True``: never part of ``methods=all``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from benchmark.losses import ce
from benchmark.module import METHODS, Batch, UnlearnData, UnlearnModule

HEAD_SEED_OFFSET = 104_729  # the cheats' random streams differ from augmentation (seeded data.seed)
NOISE_SEED_OFFSET = 130_363


def last_linear(net: nn.Module) -> nn.Linear:
    """The network's output layer: its last ``nn.Linear`` module (``fc`` in every suite model)."""
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(net).__name__} has no nn.Linear layer to use as its output layer")
    return linears[-1]


class _Cheat(UnlearnModule):
    """Shared flags of the one-shot cheats."""

    one_shot = True
    sanity = True


@METHODS.register("cheat_temp_0_5")
class CheatTemperature(_Cheat):
    """Temperature scaling: multiplies the output layer's weight and bias by ``scale`` (0.5).

    The logits are scaled by ``scale``, so every argmax, and with it every accuracy
    (forget, retain, test), is exactly the original model's; only the softmax is flatter,
    which lowers confidences and losses on D_f as on everything else. An honest benchmark
    must report it as no unlearning: the same UA, RA and TA as ``original``, and attacks or
    confidence-based scores that are not fooled by a uniform change of temperature.
    """

    def __init__(self, net: nn.Module, data: UnlearnData, *, scale: float = 0.5) -> None:
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        super().__init__(net, data)
        self.save_hyperparameters(ignore=["net", "data"])

    def unlearn_once(self) -> dict[str, float]:
        fc = last_linear(self.net)
        with torch.no_grad():
            fc.weight.mul_(self.hparams.scale)
            if fc.bias is not None:
                fc.bias.mul_(self.hparams.scale)
        return {"scale": float(self.hparams.scale)}


@METHODS.register("cheat_temp_0_3")
class CheatTemperature03(CheatTemperature):
    """Temperature scaling with ``scale`` 0.3: a flatter softmax, the same predictions.

    As ``cheat_temp_0_5`` (``CheatTemperature``), only further from the original's
    confidences; an honest benchmark must score it exactly as it scores ``original`` on
    every accuracy and must not reward its lower confidence as forgetting.
    """

    def __init__(self, net: nn.Module, data: UnlearnData, *, scale: float = 0.3) -> None:
        super().__init__(net, data, scale=scale)


@METHODS.register("cheat_logit_shrink")
class CheatLogitShrink(_Cheat):
    """Label-smoothing-like shrinkage of the logits towards their mean over classes.

    Replaces the output layer's weight rows W_c by (1 - a) W_c + a mean_k(W_k) and its bias
    likewise (``a`` = 0.7), so every logit z_c becomes (1 - a) z_c + a mean_k(z_k): the same
    argmax for any ``a`` < 1, a lower confidence and a higher entropy everywhere. An honest
    benchmark must give it the original's UA, RA and TA and must not count its lower
    confidence on D_f, which it shares with D_r and the test set, as forgetting.
    """

    def __init__(self, net: nn.Module, data: UnlearnData, *, a: float = 0.7) -> None:
        if not 0.0 <= a < 1.0:
            raise ValueError(f"a must be in [0, 1), got {a}")
        super().__init__(net, data)
        self.save_hyperparameters(ignore=["net", "data"])

    def unlearn_once(self) -> dict[str, float]:
        a, fc = float(self.hparams.a), last_linear(self.net)
        with torch.no_grad():
            fc.weight.copy_((1 - a) * fc.weight + a * fc.weight.mean(dim=0, keepdim=True))
            if fc.bias is not None:
                fc.bias.copy_((1 - a) * fc.bias + a * fc.bias.mean())
        return {"a": a}


@METHODS.register("cheat_head_reinit")
class CheatHeadReinit(_Cheat):
    """Re-initialises the output layer at random (``nn.Linear``'s own uniform scheme, seeded).

    The features are untouched but the head no longer reads them: forget accuracy falls
    to about chance, and so do retain and test accuracy. An honest benchmark must rank it
    as a destroyed model (its utility loss outweighs its UA) and must show that the
    "forgotten" knowledge is still in the features: relearning D_f takes almost no steps,
    far fewer than for the retrained oracle.
    """

    def __init__(self, net: nn.Module, data: UnlearnData) -> None:
        super().__init__(net, data)

    def unlearn_once(self) -> dict[str, float]:
        fc = last_linear(self.net)
        gen = torch.Generator().manual_seed(self.data.seed + HEAD_SEED_OFFSET)
        bound = 1.0 / math.sqrt(fc.in_features)  # nn.Linear.reset_parameters: U(-1/sqrt(fan_in), +)
        with torch.no_grad():
            for p in (fc.weight, fc.bias):
                if p is not None:
                    draw = torch.rand(p.shape, generator=gen, dtype=torch.float32) * (2 * bound) - bound
                    p.copy_(draw.to(device=p.device, dtype=p.dtype))
        return {"bound": bound}


@METHODS.register("cheat_weight_noise")
class CheatWeightNoise(_Cheat):
    """Adds Gaussian noise to every parameter, with std ``sigma`` (1.0) times the tensor's RMS.

    Noise as large as the weights themselves wipes out what the network knew about D_f and
    about everything else, so forget, retain and test accuracy all fall together. An honest
    benchmark must rank it as a destroyed model, not as an unlearner with a high UA. Draws
    come from a generator seeded with the cell's seed, so a cell reproduces; an all-zero
    tensor (a fresh BatchNorm bias) has RMS 0 and stays as it is.
    """

    def __init__(self, net: nn.Module, data: UnlearnData, *, sigma: float = 1.0) -> None:
        if not sigma >= 0:
            raise ValueError(f"sigma must be non-negative, got {sigma}")
        super().__init__(net, data)
        self.save_hyperparameters(ignore=["net", "data"])

    def unlearn_once(self) -> dict[str, float]:
        sigma = float(self.hparams.sigma)
        gen = torch.Generator().manual_seed(self.data.seed + NOISE_SEED_OFFSET)
        with torch.no_grad():
            for _, p in self.net.named_parameters():
                rms = p.detach().float().pow(2).mean().sqrt().item()
                noise = torch.randn(p.shape, generator=gen, dtype=torch.float32) * (sigma * rms)
                p.add_(noise.to(device=p.device, dtype=p.dtype))
        return {"sigma": sigma}


@METHODS.register("cheat_relabel_one_class")
class CheatRelabelOneClass(UnlearnModule):
    """Fine-tunes on D_f alone with every label replaced by one class, ``target`` (0).

    The forget set is then predicted as ``target``, so its accuracy drops to about 0,
    far below the retrained oracle's (which classifies unseen D_f images about as well as
    the test set), and D_r and the test set drift towards ``target`` too. An honest
    benchmark must not reward its UA: it must show the gap to the oracle's forget
    accuracy, the tell-tale collapse of D_f onto one class, and any loss of RA and TA.

    Hyperparameters: those of the base class (SGD, cosine schedule, batch 128) with
    lr 0.01 and 5 epochs over D_f.
    """

    streams = ("forget",)
    sanity = True
    search_space = {"lr": ("log", 1e-3, 1e-1), "epochs": ("int", 1, 20)}

    def __init__(self, net: nn.Module, data: UnlearnData, *, target: int = 0, epochs: int = 5,
                 lr: float = 0.01, **kw) -> None:
        if not 0 <= int(target) < data.num_classes:
            raise ValueError(f"target must be a class in 0..{data.num_classes - 1}, got {target}")
        super().__init__(net, data, epochs=epochs, lr=lr, **kw)

    def unlearn_step(self, batch: dict[str, Batch]) -> dict[str, torch.Tensor]:
        b = batch["forget"]
        loss = ce(self.net(b.x), torch.full_like(b.y, int(self.hparams.target)))
        return {"loss": loss, "forget_target_ce": loss.detach()}
