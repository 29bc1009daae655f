"""Hawk, Griffin and their MQA Transformer baseline (De et al. 2024) and RecurrentGemma
(Botev et al. 2024).

* :mod:`lru.griffin.blocks`: RMSNorm, the causal Conv1D, the recurrent block, the GeGLU MLP,
  the residual block (the RG-LRU itself is :mod:`lru.layers.rglru`);
* :mod:`lru.griffin.attention`: local multi-query attention with RoPE and its ring buffer;
* :mod:`lru.griffin.model`: the causal language model, its configuration and presets;
* :mod:`lru.griffin.sampling`: constant-memory generation from left-padded prompts;
* :mod:`lru.griffin.convert`: the official RecurrentGemma Flax parameters and checkpoints;
* :mod:`lru.griffin.classifier`: Hawk, Griffin and the MQA Transformer (all attention,
  :func:`lru.griffin.model.mqa_pattern`) as LRA classifiers for the harness.
"""

from lru.griffin.convert import (from_recurrentgemma, load_recurrentgemma_checkpoint,
                                 to_recurrentgemma)
from lru.griffin.model import (PRESETS, GriffinConfig, GriffinLM, count_params,
                               griffin_pattern, hawk_pattern, mqa_pattern, preset)
from lru.griffin.sampling import generate, sample_logits

__all__ = ["PRESETS", "GriffinConfig", "GriffinLM", "count_params", "from_recurrentgemma",
           "generate", "griffin_pattern", "hawk_pattern", "load_recurrentgemma_checkpoint",
           "mqa_pattern", "preset", "sample_logits", "to_recurrentgemma"]
