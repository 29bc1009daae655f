"""lru.kernels.batchnorm.batch_norm_train against Flax's nnx.BatchNorm (training mode, with a mask):
outputs, batch statistics and gradients (the hand-written backward against autodiff of
Flax's code), and through MaskedNorm in a block."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lru.kernels.batchnorm import batch_norm_train
from lru.blocks import MaskedNorm, length_mask

B, T, D = 3, 7, 5
LENGTHS = (7, 4, 1)
EPS = 1e-5


def _inputs(seed: int = 0, garbage: float | None = 1e3):
    kx, ks, kb = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(kx, (B, T, D)) * 2 + 0.5
    mask = length_mask(jnp.asarray(LENGTHS), T)
    if garbage is not None:  # padding that would dominate the statistics if it counted
        x = jnp.where(mask[..., None], x, garbage)
    scale = 1 + 0.3 * jax.random.normal(ks, (D,))
    bias = 0.2 * jax.random.normal(kb, (D,))
    return x, mask, scale, bias


def flax_reference(x, mask, scale, bias):
    """Flax's BatchNorm in training mode; momentum 0, so its running averages after the call
    are the batch statistics (differentiable: they are plain arrays here)."""
    bn = nnx.BatchNorm(x.shape[-1], momentum=0.0, epsilon=EPS, rngs=nnx.Rngs(0))
    bn.scale[...], bn.bias[...] = scale, bias
    y = bn(x, mask=mask[..., None])
    return y, bn.mean[...], bn.var[...]


def jnp_reference(x, mask, scale, bias):
    """Flax's formulas written out without its stop_gradient on the statistics, so autodiff
    also covers the cotangents of the returned mean and variance."""
    valid, axes = mask[..., None], (0, 1)
    mean = x.mean(axes, where=valid)
    var = jnp.maximum(0.0, jnp.square(x).mean(axes, where=valid) - jnp.square(mean))
    return (x - mean) * jax.lax.rsqrt(var + EPS) * scale + bias, mean, var


def _loss(fn, weights):
    def loss(x, scale, bias, mask):
        y, mean, var = fn(x, mask, scale, bias)
        return jnp.sum(y * weights[0]) + jnp.sum(mean * weights[1]) + jnp.sum(var * weights[2])
    return loss


@pytest.mark.parametrize("garbage", [None, 1e3])
def test_values_and_statistics_match_flax(garbage):
    x, mask, scale, bias = _inputs(1, garbage)
    got = batch_norm_train(x, mask, scale, bias, EPS)
    want = flax_reference(x, mask, scale, bias)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("reference, with_stats", [(flax_reference, False),
                                                   (jnp_reference, True)])
def test_gradients_match_autodiff(reference, with_stats):
    """d/d(x, scale, bias) of a loss on the output (against Flax, which stops gradients at
    its statistics) and of one on the output and both statistics (against the formulas)."""
    x, mask, scale, bias = _inputs(2, garbage=None)
    k = jax.random.split(jax.random.key(3), 3)
    weights = (jax.random.normal(k[0], (B, T, D)), jax.random.normal(k[1], (D,)) * with_stats,
               jax.random.normal(k[2], (D,)) * with_stats)
    ours = jax.grad(_loss(lambda *a: batch_norm_train(*a, EPS), weights), argnums=(0, 1, 2))
    ref = jax.grad(_loss(reference, weights), argnums=(0, 1, 2))
    for g, w in zip(ours(x, scale, bias, mask), ref(x, scale, bias, mask)):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_padding_gets_no_gradient_through_the_statistics():
    """With the loss on valid outputs only, padded inputs (excluded from the statistics) get
    exactly zero gradient, whatever their values."""
    x, mask, scale, bias = _inputs(4, garbage=50.0)
    w = jnp.where(mask[..., None], jax.random.normal(jax.random.key(7), x.shape), 0)
    dx = jax.grad(lambda x: jnp.sum(w * batch_norm_train(x, mask, scale, bias, EPS)[0]))(x)
    assert np.all(np.asarray(dx)[~np.asarray(mask)] == 0)
    assert np.abs(np.asarray(dx)[np.asarray(mask)]).max() > 1e-3


def test_no_valid_position_gives_zero_statistics_not_nan():
    x, _, scale, bias = _inputs(5)
    mask = jnp.zeros((B, T), bool)
    y, mean, var = batch_norm_train(x, mask, scale, bias, EPS)
    assert np.all(np.asarray(mean) == 0) and np.all(np.asarray(var) == 0)
    assert np.all(np.isfinite(np.asarray(y)))
    dx = jax.grad(lambda x: jnp.sum(batch_norm_train(x, mask, scale, bias, EPS)[0]))(x)
    assert np.all(np.isfinite(np.asarray(dx)))


@pytest.mark.parametrize("with_mask", [True, False])
def test_masked_norm_training_matches_flax_and_updates_running_stats(with_mask):
    """MaskedNorm (momentum 0.9) in training mode: the output and both running averages equal
    nnx.BatchNorm's on the same input; without a mask every position counts."""
    x, mask, scale, bias = _inputs(6, garbage=None)
    norm = MaskedNorm(D, "batch", rngs=nnx.Rngs(0))
    ref = nnx.BatchNorm(D, momentum=0.9, rngs=nnx.Rngs(0))
    for m in (norm.norm, ref):
        m.scale[...], m.bias[...] = scale, bias
    norm.train()
    out = norm(x, mask if with_mask else None)
    want = ref(x, mask=mask[..., None]) if with_mask else ref(x)
    np.testing.assert_allclose(out, want, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(norm.norm.mean[...], ref.mean[...], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm.norm.var[...], ref.var[...], rtol=1e-5, atol=1e-6)
