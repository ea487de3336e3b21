"""The generative track (``task=generate``, docs/protocol.md s.8): class-conditional diffusion
models unlearned behind ``UnlearnModule``, scored by a classifier the suite trains, attacked
by the relearning attack with RCD.

- :mod:`~benchmark.generative.diffusion`: noise schedule, DDPM loss, DDIM sampler with
  classifier-free guidance;
- :mod:`~benchmark.generative.methods`: the method registry, ``GenData``, the denoising mixin
  and the reference generators' trainer;
- :mod:`~benchmark.generative.evaluation`: the evaluator classifier and sample scoring
  (forgetting, per-class accuracy, FID/KID);
- :mod:`~benchmark.generative.relearn`: the relearning attack on generators.

The networks are registered models (``benchmark.models.unet``); the stages are
``benchmark.stages.generate``; the methods live in ``baselines/generative/``.
"""
