"""Small CNNs for CPU work and a CIFAR-stem ResNet-18 for GPUs.

Every factory has the signature ``(num_classes, in_channels) -> nn.Module`` and the
network's output layer is the attribute ``fc``.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from benchmark.registry import Registry

MODELS = Registry("model")


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class DigitsCNN(nn.Module):
    """~80k parameters for 8x8 single-channel digits; enough capacity to memorise."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(*_conv_bn(in_channels, 32), *_conv_bn(32, 64), nn.MaxPool2d(2))
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, 64), nn.ReLU(inplace=True))
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C, 8, 8]
        return self.fc(self.hidden(self.features(x)))


class SmallCNN(nn.Module):
    """~100k-parameter CNN with a global-average-pool head for 32x32 images (docs/protocol.md s.2)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv_bn(in_channels, w), *_conv_bn(w, w), nn.MaxPool2d(2),          # 16x16
            *_conv_bn(w, 2 * w), *_conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),      # 8x8
            *_conv_bn(2 * w, 3 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(3 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C, H, W]
        return self.fc(self.features(x))


class MLP(nn.Module):
    """Two hidden layers on flattened pixels: little inductive bias, so it memorises
    rather than generalises (useful for a measurable memorisation gap on tiny data)."""

    def __init__(self, num_classes: int, in_features: int, hidden: int = 256) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(inplace=True),
                                    nn.Linear(hidden, hidden), nn.ReLU(inplace=True))
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C, H, W]
        return self.fc(self.hidden(x))


@MODELS.register("digits_mlp")
def digits_mlp(num_classes: int, in_channels: int) -> nn.Module:
    """MLP for 8x8 digits (in_channels * 64 inputs)."""
    return MLP(num_classes, in_channels * 64)


@MODELS.register("digits_cnn")
def digits_cnn(num_classes: int, in_channels: int) -> nn.Module:
    return DigitsCNN(num_classes, in_channels)


@MODELS.register("cnn32")
def cnn32(num_classes: int, in_channels: int) -> nn.Module:
    return SmallCNN(num_classes, in_channels)


@MODELS.register("resnet18")
def resnet18(num_classes: int, in_channels: int) -> nn.Module:
    """ResNet-18 with the CIFAR stem: a 3x3 stride-1 first convolution and no max-pool."""
    net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


def build_model(name: str, num_classes: int, in_channels: int) -> nn.Module:
    """Builds a registered network; the caller seeds the RNG beforehand."""
    return MODELS.get(name)(num_classes, in_channels)


def trainable_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of the trainable parameters (weight-space metrics use these)."""
    return {k: p.detach().clone() for k, p in net.named_parameters() if p.requires_grad}
