"""The generative track's methods (``task=generate``, docs/protocol.md s.8): class-conditional
diffusion models unlearned behind the same ``UnlearnModule`` loop, with the denoising loss in
place of cross-entropy. Each module registers one class in
``benchmark.generative.methods.GEN_METHODS`` under its module name (``finetune``, ``ieu``, ...),
reusing its classifier counterpart's class where the idea is the same. Importing this package
registers them all; classifier runs never see them."""

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")
