"""Bad Teacher: distil D_r from the original model and D_f from a randomly initialised one.

"Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks using an
Incompetent Teacher" (Chundawat, Tarun, Mandal and Kankanhalli, AAAI 2023,
https://arxiv.org/abs/2205.08096; code: github.com/vikram2000b/bad-teaching-unlearning).
The student starts from theta_o and sees one shuffled stream over D_f and a random
``retain_fraction`` of D_r. Each example's target is the softmax of a frozen teacher:
the competent theta_o for retain examples, the incompetent random network for forget
examples; the loss is KL(teacher || student) at temperature T, batchmean.

Hyperparameters (docs/protocol.md section 6): ``temperature`` 1 (0.5..4); ``retain_fraction``
0.3 (0.1..1); Adam lr 1e-4 (log 1e-5..1e-3), 1 epoch, no weight decay, constant rate,
batch 256.

Departures from the reference code: KL with ``reduction="batchmean"`` (the reference's
default ``"mean"`` also divides by the class count) and scaled by T^2 (1 at T = 1);
forget membership comes from the index arrays, never from a label column; the retain
sample and the incompetent network's initialisation come from generators seeded with the
cell's seed.
"""

from __future__ import annotations

import copy

import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import nn

from benchmark.losses import kl_to_teacher
from benchmark.module import METHODS, Batch, UnlearnData, UnlearnModule, make_loader

MIXED_LOADER_SEED_OFFSET = 5  # UnlearnModule.loader uses data.seed * 10 + 1..3


def reinitialised(net: nn.Module, seed: int) -> nn.Module:
    """A copy of ``net`` with freshly initialised weights (and BatchNorm statistics), seeded."""
    fresh = copy.deepcopy(net).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in fresh.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    return fresh


@METHODS.register()
class BadTeacher(UnlearnModule):
    streams = ("forget", "retain")
    search_space = {"lr": ("log", 1e-5, 1e-3), "retain_fraction": ("float", 0.1, 1.0),
                    "temperature": ("float", 0.5, 4.0), "epochs": ("int", 1, 5)}

    def __init__(self, net: nn.Module, data: UnlearnData, *, temperature: float = 1.0,
                 retain_fraction: float = 0.3, epochs: int = 1, batch_size: int = 256, lr: float = 1e-4,
                 optimizer: str = "adam", weight_decay: float = 0.0, scheduler: str = "constant", **kw) -> None:
        if temperature <= 0 or not 0.0 < retain_fraction <= 1.0:
            raise ValueError(f"need temperature > 0 and 0 < retain_fraction <= 1, got {temperature}, "
                             f"{retain_fraction}")
        super().__init__(net, data, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                         weight_decay=weight_decay, scheduler=scheduler, **kw)
        self.save_hyperparameters(ignore=["net", "data"])

    def on_unlearn_start(self) -> None:
        self.freeze_copy("competent")
        self.freeze_copy("incompetent", reinitialised(self.net, self.data.seed).to(self.device))
        self._forget_idx = self.data.forget.to(self.device)

    def sample(self) -> torch.Tensor:
        """Indices of the shuffled stream: all of D_f and a seeded ``retain_fraction`` of D_r."""
        retain = self.data.retain
        gen = torch.Generator().manual_seed(self.data.seed)
        keep = retain[torch.randperm(len(retain), generator=gen)[: round(self.hparams.retain_fraction * len(retain))]]
        return torch.cat([self.data.forget, keep])

    def train_dataloader(self) -> CombinedLoader:
        loader = make_loader(self.data, self.sample(), self.hparams.batch_size, shuffle=True,
                             seed=self.data.seed * 10 + MIXED_LOADER_SEED_OFFSET)
        return CombinedLoader({"mixed": loader}, mode="max_size_cycle")

    def unlearn_step(self, batch: dict[str, Batch]) -> dict:
        b = batch["mixed"]
        is_forget = torch.isin(b.idx, self._forget_idx)  # [B]
        with torch.no_grad():
            target = torch.where(is_forget[:, None], self.incompetent(b.x), self.competent(b.x))  # [B, C]
        loss = kl_to_teacher(self.net(b.x), target, self.hparams.temperature)
        return {"loss": loss, "forget_share": is_forget.float().mean()}
