"""Hawk, Griffin and the RG-LRU rung in the LRA harness (``lru.griffin.classifier``,
``model=hawk|griffin|rg_lru`` through ``lru.training.loop``): padding never changes a prediction,
the harness's own block keys are refused, the optimizer groups, and a short run on
generated ListOps that learns well above the majority-class rate.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lru.training.config import register
from lru.griffin.classifier import GriffinClassifier, GriffinDualClassifier
from lru.training.loop import train
from lru.training.optim import RECURRENT, param_labels
from tests.jitted import forward
from tests.tiny import compose_cfg, tiny_overrides

register()


def classifier(pattern, bidirectional=False, seed=0, cls=GriffinClassifier, **kw):
    return cls(16, 24, 3, 5, pattern=pattern, num_heads=2, attention_window=3,
               bidirectional=bidirectional, rngs=nnx.Rngs(seed), **kw)


def padded_batch(seed, lengths, time, vocab=11):
    tokens = np.asarray(jax.random.randint(jax.random.key(seed), (len(lengths), time), 1, vocab))
    garbage = np.asarray(jax.random.randint(jax.random.key(seed + 1), tokens.shape, 1, vocab))
    mask = np.arange(time)[None] < np.asarray(lengths)[:, None]
    return jnp.asarray(np.where(mask, tokens, garbage)), jnp.asarray(lengths)


@pytest.mark.parametrize("pattern,bidirectional",
                         [("hawk", False), ("griffin", False), ("hawk", True), ("griffin", True)])
def test_padding_never_changes_a_prediction(pattern, bidirectional):
    model = classifier(pattern, bidirectional, vocab_size=11)
    tokens, lengths = padded_batch(0, [9, 4, 7], 9)
    batch = forward(model, tokens, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone = forward(model, tokens[i:i + 1, :n], lengths[i:i + 1])
        np.testing.assert_allclose(batch[i], alone[0], rtol=1e-5, atol=1e-5)


def test_dual_classifier_and_real_inputs():
    dual = classifier("griffin", cls=GriffinDualClassifier, vocab_size=11)
    t1, l1 = padded_batch(2, [6, 3], 6)
    t2, l2 = padded_batch(4, [2, 8], 8)
    out = forward(dual, t1, l1, t2, l2)
    alone = forward(dual, t1[1:, :3], l1[1:], t2[1:], l2[1:])
    np.testing.assert_allclose(out[1], alone[0], rtol=1e-5, atol=1e-5)
    pixels = classifier("hawk", bidirectional=True, d_input=1)
    assert pixels(jnp.ones((2, 10)), jnp.array([10, 7])).shape == (2, 5)
    with nnx.set_graph_mode(False):
        got = jax.jit(lambda m, *args: m(*args))(dual, t1, l1, t2, l2)
    np.testing.assert_allclose(got, out, rtol=1e-5, atol=1e-5)


def test_rglru_parameters_train_in_the_recurrent_group():
    model = classifier("griffin", vocab_size=11)
    labels = nnx.to_flat_state(param_labels(model))
    recurrent = {path[-1] for path, label in labels if label == RECURRENT}
    assert recurrent == {"a_param"}
    from lru.layers import RGLRULayer

    layer = RGLRULayer(8, 8, complex=True, rngs=nnx.Rngs(0))
    labels = nnx.to_flat_state(param_labels(layer))
    assert {path[-1] for path, label in labels if label == RECURRENT} == {"a_param", "theta", "B"}


# --------------------------------------------------------------------------- through lru.training.loop


def tiny(data_dir: Path, run_dir: Path, steps: int) -> list[str]:
    """The tiny job (tests/tiny.py) without checkpoints, evaluated every 100 steps."""
    return tiny_overrides(data_dir, run_dir, steps) + ["trainer.eval_every=100",
                                                       "trainer.checkpoint=false"]


def test_harness_block_keys_given_to_a_backbone_are_refused_naming_the_key(tmp_path, data_dir):
    given = ["model=hawk", "model.norm=layer"]
    cfg = compose_cfg(tiny(data_dir, tmp_path / "run", 2) + given)
    summary = train(cfg, given)
    assert summary["status"] == "failed"
    assert "model.norm" in summary["reason"] and "hawk" in summary["reason"]
    assert "RMSNorm" in summary["reason"]
    cfg = compose_cfg(tiny(data_dir, tmp_path / "run2", 2)
                      + ["model=griffin", "+model.layer_options.window=3"])
    summary = train(cfg)
    assert summary["status"] == "failed" and "attention_window" in summary["reason"]


@pytest.mark.parametrize("model", ["hawk", "griffin", "rg_lru"])
def test_learns_in_a_short_run(model, tmp_path, data_dir):
    cfg = compose_cfg(tiny(data_dir, tmp_path / "run", 200)
                      + [f"model={model}", "model.d_model=16", "model.d_state=16",
                         "model.n_layers=2"])
    summary = train(cfg)
    assert summary["status"] == "finished", summary.get("reason")
    assert summary["model"] == model and summary["rung"] is None
    assert summary["test_accuracy"] > summary["majority_rate"] + 0.1, summary
