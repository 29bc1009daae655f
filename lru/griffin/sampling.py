"""Constant-memory generation from a Griffin/Hawk language model.

Axis legend: ``b`` batch, ``t`` prompt length, ``n`` generated tokens, ``v`` vocabulary.

A batch of prompts is left-padded to a common length ``t``; each row's real tokens get
positions ``0 .. length - 1`` and its padding -1 (:func:`left_padded_positions`), so the
first real token starts the row's document and no block reads the padding. The prompt runs
in parallel (:meth:`GriffinLM.prefill`), then each new token is one :meth:`GriffinLM.step`
from the caches, whose shapes never change: an RG-LRU state and three Conv1D inputs per
recurrent block, a ring buffer of ``window`` keys and values per attention block. The whole
loop is one jitted ``lax.scan``.

Sampling (:func:`sample_logits`): greedy (``temperature=0``), or softmax sampling at a
temperature, optionally restricted to the ``top_k`` most likely tokens.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from lru.griffin.model import GriffinLM
from lru.griffin.segments import left_padded_positions

Array = jax.Array


def sample_logits(logits: Array, key: Array | None, *, temperature: float = 0.0,
                  top_k: int | None = None) -> Array:
    """Next tokens ``(b,)`` from logits ``(b, v)``.

    Args:
      logits: ``(b, v)``.
      key: PRNG key (unused when greedy).
      temperature: 0 for greedy (argmax); otherwise sample ``softmax(logits / temperature)``.
      top_k: if given, sample among the ``top_k`` largest logits only.
    """
    if temperature < 0:
        raise ValueError(f"sample_logits: temperature must be >= 0 (0 is greedy); got "
                         f"{temperature}")
    if temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    if key is None:
        raise ValueError("sample_logits: sampling at temperature > 0 needs a PRNG key; pass "
                         "key=jax.random.key(seed) or use temperature=0 (greedy)")
    logits = logits.astype(jnp.float32) / temperature
    if top_k is not None:
        if not 1 <= top_k <= logits.shape[-1]:
            raise ValueError(f"sample_logits: top_k must be in [1, {logits.shape[-1]}]; got "
                             f"{top_k}")
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits >= kth, logits, -jnp.inf)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("graphdef", "steps", "temperature", "top_k"))
def _generate(graphdef, state, prompts, lengths, key, *, steps, temperature, top_k):
    model = nnx.merge(graphdef, state)
    positions = left_padded_positions(lengths, prompts.shape[1])
    logits, caches = model.prefill(prompts, positions)
    keys = jax.random.split(key, steps)
    first = sample_logits(logits[:, -1], keys[0], temperature=temperature, top_k=top_k)

    def body(carry, key_t):
        token, pos, caches = carry
        step_logits, caches = model.step(token, pos, caches)
        nxt = sample_logits(step_logits, key_t, temperature=temperature, top_k=top_k)
        return (nxt, pos + 1, caches), nxt

    (_, _, caches), rest = jax.lax.scan(body, (first, lengths.astype(jnp.int32), caches),
                                        keys[1:])
    return jnp.concatenate([first[:, None], rest.T], axis=1), caches


def generate(model: GriffinLM, prompts: Array, lengths: Array, steps: int, *,
             temperature: float = 0.0, top_k: int | None = None,
             key: Array | None = None, return_cache: bool = False):
    """Continue left-padded prompts by ``steps`` tokens each.

    Args:
      model: a :class:`GriffinLM`.
      prompts: ``(b, t)`` int token ids, each row's ``lengths[i]`` real tokens at its right
        end (anything before them is padding and is never read).
      lengths: ``(b,)`` real tokens per row, each at least 1.
      steps: tokens to generate per row (at least 1).
      temperature, top_k: see :func:`sample_logits`.
      key: PRNG key, needed when ``temperature > 0``.
      return_cache: also return the caches after the last step.

    Returns:
      ``(b, steps)`` int32 generated tokens (and the caches if ``return_cache``).
    """
    prompts = jnp.asarray(prompts, jnp.int32)
    lengths = jnp.asarray(lengths, jnp.int32)
    if steps < 1:
        raise ValueError(f"generate: steps must be >= 1; got {steps}")
    if prompts.ndim != 2 or lengths.shape != (prompts.shape[0],):
        raise ValueError(f"generate: prompts must be (batch, time) and lengths (batch,); got "
                         f"{prompts.shape} and {lengths.shape}")
    if int(lengths.min()) < 1 or int(lengths.max()) > prompts.shape[1]:
        raise ValueError(f"generate: every length must be in [1, {prompts.shape[1]}] (the "
                         f"real tokens at the right end of each row); got {lengths.tolist()}")
    if temperature > 0 and key is None:
        raise ValueError("generate: sampling at temperature > 0 needs key=jax.random.key(seed)")
    graphdef, state = nnx.split(model)
    tokens, caches = _generate(graphdef, state, prompts, lengths,
                               jax.random.key(0) if key is None else key, steps=steps,
                               temperature=float(temperature), top_k=top_k)
    return (tokens, caches) if return_cache else tokens
