"""Constant-memory generation (``lru.griffin.sampling`` and ``GriffinLM.prefill/step``).

* The parallel forward equals prefilling part of a sequence and decoding the rest one token
  at a time, to float32 tolerance, well past the attention window, for Griffin, Hawk and the
  MQA Transformer (all attention, a full-length window; more in tests/test_mqa.py).
* Two documents packed in one row give what each gives alone, in parallel and decoding.
* A left-padded batch gives each row what the row gives alone, whatever the padding holds.
* The caches keep their shapes however many tokens are generated.
* Sampling: greedy, temperature and top-k.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lru.griffin import GriffinConfig, GriffinLM, griffin_pattern, hawk_pattern, mqa_pattern
from lru.griffin.sampling import generate, sample_logits
from lru.griffin.segments import left_padded_positions
from tests.jitted import forward


VOCAB, WINDOW, T = 41, 4, 17


def make_model(pattern, seed=0, window=WINDOW, layers=3):
    cfg = GriffinConfig(vocab_size=VOCAB, width=16, mlp_expanded_width=48, num_heads=2,
                        block_types=pattern(layers), lru_width=24, attention_window_size=window)
    model = GriffinLM(cfg, rngs=nnx.Rngs(seed))
    model.embedder.input_embedding[...] *= 8.0  # livelier logits than the tiny init's
    return model


MODELS = {"griffin": lambda: make_model(griffin_pattern),
          "hawk": lambda: make_model(hawk_pattern, seed=1),
          "mqa": lambda: make_model(mqa_pattern, seed=2, window=T)}


#: The model's prefill, compiled once per shape (tests/jitted.py says why).
prefill_of = nnx.jit(lambda model, *args: model.prefill(*args))


@functools.cache
def stepper(graphdef):
    """One decoding step of ``graphdef``'s models, jitted once for every ``decode`` call."""
    return jax.jit(lambda state, *args: nnx.merge(graphdef, state).step(*args))


def tokens_of(seed, shape):
    return jax.random.randint(jax.random.key(seed), shape, 0, VOCAB)


def decode(model, tokens, segment_pos, prefill):
    """Logits of ``prefill`` tokens in parallel, then of the rest one step at a time."""
    graphdef, state = nnx.split(model)
    step = stepper(graphdef)
    logits, caches = prefill_of(model, tokens[:, :prefill], segment_pos[:, :prefill])
    out = [logits]
    shapes = jax.tree.map(jnp.shape, caches)
    for t in range(prefill, tokens.shape[1]):
        step_logits, caches = step(state, tokens[:, t], segment_pos[:, t], caches)
        out.append(step_logits[:, None])
        assert jax.tree.map(jnp.shape, caches) == shapes  # constant memory
    return jnp.concatenate(out, axis=1)


def close(a, b, scale=None):
    scale = float(jnp.abs(b).max()) if scale is None else scale
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-6 * max(scale, 1.0) * 10)


@pytest.mark.parametrize("name", list(MODELS))
def test_decoding_equals_the_parallel_forward_past_the_window(name):
    model = MODELS[name]()
    tokens = tokens_of(0, (2, T))
    seg = jnp.broadcast_to(jnp.arange(T), (2, T))
    full = forward(model, tokens, seg)
    for prefill in (1, 3, 9):  # T - prefill > 2 windows decoded step by step
        close(decode(model, tokens, seg, prefill), full)


@pytest.mark.parametrize("name", ["griffin", "hawk"])
def test_packed_documents_equal_each_document_alone(name):
    model = MODELS[name]()
    doc1, doc2 = tokens_of(1, (1, 7)), tokens_of(2, (1, 10))
    packed = jnp.concatenate([doc1, doc2], axis=1)
    seg = jnp.concatenate([jnp.arange(7), jnp.arange(10)])[None]
    both = forward(model, packed, seg)
    close(both[:, :7], forward(model, doc1))
    close(both[:, 7:], forward(model, doc2))
    # decoding across the boundary starts the second document afresh too
    close(decode(model, packed, seg, 5), both)


@pytest.mark.parametrize("name", ["griffin", "hawk"])
def test_left_padded_rows_equal_each_row_alone(name):
    model = MODELS[name]()
    lengths = jnp.array([3, 8, 5])
    prompts = tokens_of(3, (3, 8))  # garbage in the padding: it must never be read
    seg = left_padded_positions(lengths, 8)
    rest = tokens_of(4, (3, 9))
    padded = decode(model, jnp.concatenate([prompts, rest], 1),
                    jnp.concatenate([seg, seg[:, -1:] + 1 + jnp.arange(9)], 1), 8)
    for i, n in enumerate(lengths.tolist()):
        row = jnp.concatenate([prompts[i:i + 1, 8 - n:], rest[i:i + 1]], 1)
        alone = forward(model, row)
        close(padded[i:i + 1, 8 - n:], alone)
    greedy = generate(model, prompts, lengths, 6)
    for i, n in enumerate(lengths.tolist()):
        np.testing.assert_array_equal(greedy[i], generate(model, prompts[i:i + 1, 8 - n:],
                                                          lengths[i:i + 1], 6)[0])


def test_generated_tokens_continue_the_prompt_greedily():
    model = MODELS["griffin"]()
    prompt = tokens_of(5, (1, 6))
    out = generate(model, prompt, jnp.array([6]), 5)
    seq = prompt
    for _ in range(5):  # greedy by re-running the whole sequence each time
        seq = jnp.concatenate([seq, jnp.argmax(forward(model, seq)[:, -1], -1)[:, None]], 1)
    np.testing.assert_array_equal(out, seq[:, 6:])


def test_cache_memory_does_not_grow_with_generated_length():
    for name in ("griffin", "hawk"):
        model = MODELS[name]()
        prompt, lengths = tokens_of(6, (2, 5)), jnp.array([5, 2])
        sizes = []
        for steps in (2, 30):
            _, caches = generate(model, prompt, lengths, steps, return_cache=True)
            sizes.append(sum(x.nbytes for x in jax.tree.leaves(caches)))
        assert sizes[0] == sizes[1]
    # per block: the RG-LRU state and 3 Conv1D inputs, or `window` keys and values
    _, caches = generate(MODELS["griffin"](), prompt, lengths, 3, return_cache=True)
    assert caches[0].rg_lru.shape == (2, 24) and caches[0].conv1d.shape == (2, 3, 24)
    assert caches[2].keys.shape == (2, WINDOW, 8) and caches[2].values.shape == (2, WINDOW, 8)


def test_sampling_greedy_temperature_and_top_k():
    logits = jnp.log(jnp.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]]))
    np.testing.assert_array_equal(sample_logits(logits, None), [3, 0])
    key = jax.random.key(0)
    np.testing.assert_array_equal(sample_logits(logits, key, temperature=5.0, top_k=1), [3, 0])
    draws = jax.vmap(lambda k: sample_logits(logits, k, temperature=1.0))(
        jax.random.split(key, 20000))
    freq = np.mean(np.asarray(draws[:, 0])[:, None] == np.arange(4), axis=0)
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.015)
    top2 = jax.vmap(lambda k: sample_logits(logits, k, temperature=1.0, top_k=2))(
        jax.random.split(key, 4000))
    assert set(np.unique(np.asarray(top2[:, 0]))) == {2, 3}
    freq = np.mean(np.asarray(top2[:, 0]) == 3)
    assert freq == pytest.approx(0.4 / 0.7, abs=0.03)  # renormalised over the top 2
    cold = jax.vmap(lambda k: sample_logits(logits, k, temperature=0.01))(
        jax.random.split(key, 200))
    assert np.all(np.asarray(cold[:, 0]) == 3)  # a low temperature approaches greedy
    model = MODELS["hawk"]()
    prompt = tokens_of(7, (2, 4))
    a = generate(model, prompt, jnp.array([4, 4]), 8, temperature=1.0, top_k=5, key=key)
    b = generate(model, prompt, jnp.array([4, 4]), 8, temperature=1.0, top_k=5, key=key)
    np.testing.assert_array_equal(a, b)  # reproducible from the key


def test_errors_name_the_fix():
    model = MODELS["hawk"]()
    prompt = tokens_of(8, (2, 4))
    with pytest.raises(ValueError, match="needs key"):
        generate(model, prompt, jnp.array([4, 4]), 3, temperature=1.0)
    with pytest.raises(ValueError, match="every length"):
        generate(model, prompt, jnp.array([0, 4]), 3)
    with pytest.raises(ValueError, match="steps"):
        generate(model, prompt, jnp.array([4, 4]), 0)
    with pytest.raises(ValueError, match="top_k"):
        sample_logits(jnp.zeros((1, 3)), jax.random.key(0), temperature=1.0, top_k=4)
    with pytest.raises(ValueError, match="temperature"):
        sample_logits(jnp.zeros((1, 3)), None, temperature=-1.0)
