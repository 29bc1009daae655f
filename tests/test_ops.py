"""lru.kernels.ops: each fused form (a single CPU device's) against the plain JAX form it
replaces (everywhere else), values and gradients; the switch between them; a GELU variant
choice reaching both forms."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lru.blocks import ResidualBlock
from lru.kernels import ops
from lru.kernels.backend import forms, fused_pays
from lru.layers import LRU
from tests.spawn import xla_flags

RNG = np.random.default_rng(0)
SHAPE = (3, 7, 8)  # b, t, d


def _arr(*shape, scale=1.0):
    return jnp.asarray(RNG.standard_normal(shape) * scale, jnp.float32)


def _both(fn, *args):
    """``fn``'s value and gradient (of a weighted sum, w.r.t. every argument) in each form."""
    out = {}
    for fused in (True, False):
        with forms(fused):
            value = fn(*args)
            w = jnp.asarray(RNG.standard_normal(np.shape(value)), jnp.float32) if not out else out[True][2]
            grads = jax.grad(lambda *a: jnp.sum(w * fn(*a)), argnums=tuple(range(len(args))))(*args)
            jaxpr = str(jax.make_jaxpr(lambda *a: fn(*a))(*args))  # a fresh trace
        out[fused] = (value, grads, w, jaxpr)
    return out


def _assert_close(out, rtol=2e-5, atol=2e-5):
    (v1, g1, _, _), (v0, g0, _, _) = out[True], out[False]
    np.testing.assert_allclose(v1, v0, rtol=rtol, atol=atol)
    for a, b in zip(g1, g0):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def test_on_this_cpu_the_fused_forms_run_and_forms_switches_them():
    assert fused_pays() == (jax.default_backend() == "cpu" and jax.device_count() == 1)
    out = _both(ops.gelu, _arr(*SHAPE))
    assert "custom_vjp_call" in out[True][3]
    assert "custom_vjp_call" not in out[False][3]


@pytest.mark.parametrize("approximate", [True, False])
def test_gelu_both_forms_and_either_variant(approximate):
    z = _arr(*SHAPE, scale=3.0)
    out = _both(functools.partial(ops.gelu, approximate=approximate), z)
    _assert_close(out)
    np.testing.assert_array_equal(out[True][0], jax.nn.gelu(z, approximate=approximate))
    other = jax.grad(lambda z: jnp.sum(out[True][2] * jax.nn.gelu(z, approximate=not approximate)))(z)
    assert np.max(np.abs(np.asarray(out[True][1][0] - other))) > 1e-4  # the variants differ


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_full_glu_and_its_residual_form(precision):
    d = SHAPE[-1]
    args = (_arr(*SHAPE), _arr(d, d, scale=0.3), _arr(d), _arr(d, d, scale=0.3), _arr(d))
    tol = 2e-5 if precision == "fp32" else 2e-2
    _assert_close(_both(lambda *a: ops.full_glu(*a, precision), *args), tol, tol)
    u = _arr(*SHAPE)
    _assert_close(_both(lambda u, *a: ops.residual_full_glu(u, *a, precision), u, *args), tol, tol)


def test_projection():
    _assert_close(_both(lambda x, w: ops.project(x, w, "fp32"), _arr(*SHAPE), _arr(5, 8)))
    _assert_close(_both(lambda x, w: ops.project(x, w, "fp32"), _arr(*SHAPE), _arr(20, 8)))


@pytest.mark.parametrize("with_mask", [True, False])
def test_batch_norm_values_gradients_and_running_statistics(with_mask):
    x = _arr(*SHAPE, scale=2.0) + 1.0
    mask = jnp.asarray(RNG.random(SHAPE[:2]) < 0.7) if with_mask else None
    results = {}
    for fused in (True, False):
        bn = nnx.BatchNorm(SHAPE[-1], momentum=0.9, rngs=nnx.Rngs(0))
        with forms(fused):
            y = ops.batch_norm(bn, x, mask)
            graph, state = nnx.split(bn)
            grad = jax.grad(lambda x: jnp.sum(jnp.sin(ops.batch_norm(nnx.merge(graph, state, copy=True), x,
                                                                        mask))))(x)
        results[fused] = (y, grad, bn.mean[...], bn.var[...])
    for a, b in zip(results[True], results[False]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_recompute_equals_checkpoint_and_the_plain_function():
    def fn(x, w, mask):
        return jnp.tanh(x @ w) * mask[..., None]

    x, w, mask = _arr(*SHAPE), _arr(8, 8), jnp.asarray(RNG.random(SHAPE[:2]) < 0.6)
    out = _both(lambda x, w: ops.recompute(fn, (x, w), (mask,)), x, w)
    _assert_close(out)
    plain = jax.grad(lambda x, w: jnp.sum(out[True][2] * fn(x, w, mask)), argnums=(0, 1))(x, w)
    for a, b in zip(out[True][1], plain):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("glu", ["full_glu", "half_glu1"])
def test_residual_block_with_an_lru_is_the_same_in_both_forms(glu):
    """The whole block (BatchNorm, LRU with recomputed states, GELU, GLU, skip) in training
    mode: output and every parameter's gradient."""
    u = _arr(*SHAPE)
    mask = jnp.arange(SHAPE[1])[None] < jnp.asarray([7, 4, 6])[:, None]
    results = {}
    for fused in (True, False):
        rngs = nnx.Rngs(0)
        block = ResidualBlock(SHAPE[-1], LRU(SHAPE[-1], 6, recompute_states=True, rngs=rngs),
                              glu=glu, rngs=rngs)
        graph, params, rest = nnx.split(block, nnx.Param, ...)

        def loss(params):
            y = nnx.merge(graph, params, rest, copy=True)(u, mask)
            return jnp.sum(jnp.sin(y)), y

        with forms(fused):
            (_, y), grads = jax.value_and_grad(loss, has_aux=True)(params)
        results[fused] = (y, jax.tree.leaves(grads))
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-4, atol=1e-5)
    for a, b in zip(results[True][1], results[False][1]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_with_two_cpu_devices_the_plain_forms_run():
    """Off a single CPU device (here: a two-device CPU mesh) no fused form is traced."""
    code = """
import json, jax, jax.numpy as jnp
from lru.kernels import ops
from lru.kernels.backend import fused_pays
from lru.kernels.cpu_allocator import tune_cpu_allocator
f = lambda z: jnp.sum(ops.gelu(z) + ops.project(z, z[0], "fp32").sum())
print(json.dumps({"devices": jax.device_count(), "fused": fused_pays(),
                  "jaxpr": str(jax.make_jaxpr(f)(jnp.ones((4, 4))))}))
"""
    env = {**os.environ, "XLA_FLAGS": xla_flags("--xla_force_host_platform_device_count=2"),
           "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["devices"] == 2 and got["fused"] is False
    assert "custom_vjp_call" not in got["jaxpr"] and "tanh" in got["jaxpr"]
