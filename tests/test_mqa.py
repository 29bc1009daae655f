"""The MQA Transformer baseline (``lru.griffin.mqa_pattern``, ``model=mqa``): Griffin's residual
blocks with every temporal block a global multi-query attention.

* With a window covering the sequence, the blockwise attention equals plain causal softmax
  attention, computed here independently in numpy.
* The language model's cached decoding equals its parallel forward, past the length where a
  short window gives other outputs.
* Causality: changing a token changes no earlier output, in the language model and (padding)
  in the classifier, in both directions of a bidirectional one.
* The harness's window rule: ``model=mqa`` gets the task's ``max_length`` unless a window is
  given; a given window shorter than it is refused, naming the key; a tiny run trains.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import tasks
from lru.griffin import mqa_pattern
from lru.griffin.attention import local_attention
from lru.griffin.classifier import GriffinClassifier
from lru.training.loop import train
from lru.training.registry import build_model
from tests.jitted import forward
from tests.test_generate import VOCAB, T, close, decode, make_model, prefill_of, tokens_of
from tests.test_griffin_lra import padded_batch
from tests.tiny import compose_cfg, tiny_overrides


def dense_causal_attention(q, k, v):
    """Softmax over every key at or before each query, per head: numpy, no blocks, no window."""
    q, k, v = (np.asarray(z, np.float64) for z in (q, k, v))
    t, e = q.shape[1], q.shape[-1]
    logits = np.einsum("bthe,bse->bhts", q, k) / np.sqrt(e)
    logits = np.where(np.tril(np.ones((t, t), bool)), logits, -np.inf)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return np.einsum("bhts,bse->bthe", probs, v)


def test_a_window_covering_the_sequence_is_plain_causal_attention():
    b, t, h, e = 2, 11, 3, 8
    kq, kk, kv = jax.random.split(jax.random.key(0), 3)
    q = jax.random.normal(kq, (b, t, h, e))
    k, v = jax.random.normal(kk, (b, t, e)), jax.random.normal(kv, (b, t, e))
    starts = jnp.zeros((b, t), jnp.int32)
    want = dense_causal_attention(q, k, v)
    attend = jax.jit(local_attention, static_argnums=4)
    for window in (t, t + 5):
        np.testing.assert_allclose(attend(q, k, v, starts, window), want, atol=1e-5)
    local = np.asarray(attend(q, k, v, starts, 3))  # a short window is not global
    np.testing.assert_allclose(local[:, :4], want[:, :4], atol=1e-5)
    assert np.abs(local[:, 4:] - want[:, 4:]).max(axis=(2, 3)).min() > 1e-4


def test_decoding_equals_the_parallel_forward_past_a_short_window():
    window = 4
    mqa, short = make_model(mqa_pattern, window=T), make_model(mqa_pattern, window=window)
    tokens = tokens_of(0, (2, T))
    seg = jnp.broadcast_to(jnp.arange(T), (2, T))
    full = forward(mqa, tokens, seg)
    local = forward(short, tokens, seg)  # the same parameters, a short window
    close(local[:, :window + 1], full[:, :window + 1])  # every query sees its whole past
    assert np.abs(np.asarray(local - full))[:, window + 1:].max(axis=-1).min() > 1e-3
    close(decode(mqa, tokens, seg, 2), full)  # T - 2 tokens decoded from the cache
    _, caches = prefill_of(mqa, tokens[:, :3], seg[:, :3])
    assert {c.keys.shape for c in caches} == {(2, T, 8)}  # a key for every position


def test_a_later_token_never_changes_an_earlier_output():
    mqa = make_model(mqa_pattern, window=T)
    tokens = tokens_of(1, (1, T))
    changed = tokens.at[0, 9].set((tokens[0, 9] + 1) % VOCAB)
    a, b = np.asarray(forward(mqa, tokens)), np.asarray(forward(mqa, changed))
    np.testing.assert_array_equal(a[:, :9], b[:, :9])
    assert np.abs(a[:, 9:] - b[:, 9:]).max(axis=-1).min() > 1e-3  # and every later one moves


@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_never_changes_a_prediction(bidirectional):
    model = GriffinClassifier(16, 16, 2, 5, pattern="mqa", num_heads=2, attention_window=9,
                              bidirectional=bidirectional, vocab_size=11, rngs=nnx.Rngs(0))
    tokens, lengths = padded_batch(0, [9, 4, 7], 9)
    batch = forward(model, tokens, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone = forward(model, tokens[i:i + 1, :n], lengths[i:i + 1])
        np.testing.assert_allclose(batch[i], alone[0], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- the harness


META = tasks.TaskMeta(name="listops", n_classes=10, max_length=37, vocab_size=16)


def windows(overrides):
    cfg = compose_cfg(["run_dir=unused", "model=mqa", "model.d_model=8", "model.n_layers=2",
                       *overrides])
    model = build_model(cfg, META)
    return [(block.block_type, block.attention_block.window) for block in model.backbone.blocks]


def test_the_window_is_the_task_length_unless_given():
    assert windows([]) == [("attention", 37)] * 2
    assert windows(["model.layer_options.attention_window=64"]) == [("attention", 64)] * 2
    assert windows(["model.layer_options.attention_window=37"]) == [("attention", 37)] * 2
    # no recurrence: the RG-LRU's width need not be divisible by the heads
    assert windows(["model.d_state=7"]) == [("attention", 37)] * 2
    with pytest.raises(ValueError, match=r"model\.layer_options\.attention_window=36 .*"
                                         r"max_length=37.*global"):
        windows(["model.layer_options.attention_window=36"])


def tiny(data_dir, run_dir, *overrides):
    return compose_cfg(tiny_overrides(data_dir, run_dir, steps=2)
                       + ["model=mqa", "trainer.eval_every=2", "trainer.checkpoint=false",
                          *overrides])


def test_a_tiny_run_trains_and_a_short_window_fails_naming_the_key(tmp_path, data_dir):
    summary = train(tiny(data_dir, tmp_path / "run"))
    assert summary["status"] == "finished", summary.get("reason")
    assert summary["model"] == "mqa" and summary["rung"] is None
    summary = train(tiny(data_dir, tmp_path / "short", "model.layer_options.attention_window=8"))
    assert summary["status"] == "failed"
    assert "model.layer_options.attention_window=8" in summary["reason"]
    assert "max_length=16" in summary["reason"]
