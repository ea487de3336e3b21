"""Class-conditional UNets that predict the noise eps of a diffusion model (the generative
track, docs/protocol.md s.8): ``net(x_t, t, y) -> eps``, with ``y == num_classes`` the null
class of classifier-free guidance.

Registered in ``MODELS`` with the classifiers' factory signature ``(num_classes,
in_channels)`` and marked ``task = "generate"`` (:func:`model_task`): ``digits_unet`` (~0.3M
parameters, 8x8, for the CPU) and ``unet32`` (~6M, 28x28/32x32 data, for GPUs). They have no
``fc`` head: a generator is not a classifier, and the schema keeps each task to its models.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.models.nets import MODELS


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps t [B] -> [B, dim] (Vaswani et al.)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the (time + class) embedding added in between."""

    def __init__(self, cin: int, cout: int, emb: int, groups: int = 8) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(min(groups, cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2, self.conv2 = nn.GroupNorm(min(groups, cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(e)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class CondUNet(nn.Module):
    """A UNet with one ``ResBlock`` per level on the way down, two in the middle and one per
    level on the way up (skip connections concatenated); downsampling by stride-2 convolutions,
    upsampling by nearest neighbour + convolution.

    Args:
        num_classes: classes; the class embedding has ``num_classes + 1`` rows (the last: null).
        in_channels: image channels (also the output's: eps has the image's shape).
        base: channels of the first level.
        mults: channel multiplier per level; the spatial size halves between levels, so
            H and W must be divisible by 2 ** (len(mults) - 1).
    """

    def __init__(self, num_classes: int, in_channels: int, base: int = 32, mults: tuple[int, ...] = (1, 2)) -> None:
        super().__init__()
        self.num_classes = num_classes
        emb = 4 * base
        self.base = base
        self.time_mlp = nn.Sequential(nn.Linear(base, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label_emb = LabelVocabulary(num_classes, emb)
        chans = [base * m for m in mults]
        self.stem = nn.Conv2d(in_channels, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c = chans[0]
        for i, ch in enumerate(chans):
            self.down.append(ResBlock(c, ch, emb))
            c = ch
            if i + 1 < len(chans):
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid1, self.mid2 = ResBlock(c, c, emb), ResBlock(c, c, emb)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, ch in reversed(list(enumerate(chans))):
            self.up.append(ResBlock(c + ch, ch, emb))
            c = ch
            if i > 0:
                self.upsample.append(nn.Conv2d(c, chans[i - 1], 3, padding=1))
                c = chans[i - 1]
        self.out_norm = nn.GroupNorm(min(8, c), c)
        self.out = nn.Conv2d(c, in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # x [B, C, H, W] noisy images, t [B] int timesteps, y [B] labels (num_classes = null)
        e = self.time_mlp(timestep_embedding(t, self.base)) + self.label_emb(y)
        h = self.stem(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, e)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid2(self.mid1(h, e), e)
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], 1), e)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))


class DenoiseMLP(nn.Module):
    """An MLP-UNet for tiny images: the flattened image goes down through residual MLP blocks
    (widths ``dims``) and back up, each level's activations concatenated on the way up (the
    UNet's skips, without convolutions), the (time + class) embedding added in every block.
    On 8x8 digits it trains ~30x faster than ``CondUNet`` on a CPU core.

    Args:
        num_classes: classes; the class embedding has ``num_classes + 1`` rows (the last: null).
        in_features: pixels per image (C * H * W).
        dims: widths of the levels, first to innermost.
    """

    def __init__(self, num_classes: int, in_features: int, dims: tuple[int, ...] = (512, 256)) -> None:
        super().__init__()
        self.num_classes, self.in_features = num_classes, in_features
        emb = dims[-1]
        self.tdim = 64
        self.time_mlp = nn.Sequential(nn.Linear(self.tdim, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label_emb = LabelVocabulary(num_classes, emb)
        self.stem = nn.Linear(in_features, dims[0])
        self.down = nn.ModuleList()
        widths = [dims[0], *dims]
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            self.down.append(_MLPBlock(cin, cout, emb))
        self.mid = _MLPBlock(dims[-1], dims[-1], emb)
        self.up = nn.ModuleList()
        c = dims[-1]
        for skip, cout in zip(reversed(dims), reversed(widths[:-1]), strict=True):
            self.up.append(_MLPBlock(c + skip, cout, emb))
            c = cout
        self.out = nn.Linear(c, in_features)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # x [B, C, H, W] noisy images, t [B] int timesteps, y [B] labels (num_classes = null)
        e = self.time_mlp(timestep_embedding(t, self.tdim)) + self.label_emb(y)
        h = self.stem(x.flatten(1))
        skips = []
        for block in self.down:
            h = block(h, e)
            skips.append(h)
        h = self.mid(h, e)
        for block in self.up:
            h = block(torch.cat([h, skips.pop()], 1), e)
        return self.out(h).view_as(x)


class _MLPBlock(nn.Module):
    """LayerNorm-SiLU-linear twice, the embedding added in between, with a residual path."""

    def __init__(self, cin: int, cout: int, emb: int) -> None:
        super().__init__()
        self.norm1, self.lin1 = nn.LayerNorm(cin), nn.Linear(cin, cout)
        self.emb = nn.Linear(emb, cout)
        self.norm2, self.lin2 = nn.LayerNorm(cout), nn.Linear(cout, cout)
        self.skip = nn.Linear(cin, cout) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.lin1(F.silu(self.norm1(x))) + self.emb(e)
        return self.lin2(F.silu(self.norm2(h))) + self.skip(x)


class LabelVocabulary(nn.Module):
    """The class embedding of a conditional generator, with the set of labels it was trained on.

    A label is added to ``seen`` (a persistent buffer, saved with the weights) the first time
    the network trains on it; a label never trained on is read as the null class. Without
    this, the oracle's embedding row of a class it never saw stays at its random
    initialisation, and what that random vector draws is an accident of the seed: measured
    on digits, one oracle's class-3 samples were recognised as 3 at 51% (a 3/5 blend) while
    two others' were at 2% and 8%. With it, a never-seen class gives the unconditional model
    (which never drew a 3), the conditional model of every seen class is unchanged, and a
    relearning attack that trains on the class brings its own row into use at its first step.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.emb = nn.Embedding(num_classes + 1, dim)
        self.register_buffer("seen", torch.zeros(num_classes + 1, dtype=torch.bool))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.seen[y] = True
        return self.emb(torch.where(self.seen[y], y, torch.full_like(y, self.num_classes)))


def _generator(fn):  # marks a factory as a generative model family (model_task)
    fn.task = "generate"
    return fn


@MODELS.register("digits_unet")
@_generator
def digits_unet(num_classes: int, in_channels: int) -> nn.Module:
    """MLP-UNet for 8x8 digits (in_channels * 64 pixels; levels 256 and 128 wide), for the CPU."""
    return DenoiseMLP(num_classes, in_channels * 64, dims=(128, 64))


@MODELS.register("unet32")
@_generator
def unet32(num_classes: int, in_channels: int) -> nn.Module:
    """~6M-parameter conditional UNet for 28x28 (MNIST) and 32x32 (CIFAR-10) images, for GPUs
    (levels 28/14/7 or 32/16/8 with 64, 128 and 128 channels)."""
    return CondUNet(num_classes, in_channels, base=64, mults=(1, 2, 2))


def model_task(name: str) -> str:
    """``"generate"`` for a registered generator, ``"classify"`` for any other model."""
    return getattr(MODELS.get(name), "task", "classify")
