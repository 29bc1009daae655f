"""Data parallelism: on two forced CPU devices the sharded step equals the single-device step,
for a sequence task and for a per-token one (whose scored positions differ between the
devices' halves of the batch, so a mean taken per device would differ)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.spawn import xla_flags

SCRIPT = textwrap.dedent("""
    import functools, sys, jax, jax.numpy as jnp, numpy as np, optax
    from flax import nnx
    from lru.layers import LRU
    from lru.training.loop import make_train_step
    from lru.models import Classifier
    from lru.training.optim import OptimizerSettings, make_optimizer
    from lru.scan import planar_recurrence
    from lru.training.sharding import data_sharding, shard_batch

    assert jax.device_count() == 2, jax.devices()
    method, per_token = sys.argv[1], sys.argv[2] == "per_token"
    if method == "auto":  # the XLA loop, which XLA partitions, not the kernel, on a mesh
        jaxpr = jax.make_jaxpr(lambda b: planar_recurrence(jnp.full(4, 0.5j), b))(
            jnp.ones((2, 3, 8)))
        assert "lru_planar_scan" not in str(jaxpr), jaxpr
    model = Classifier(16, 2, 10, functools.partial(LRU, 16, 8, scan_method=method),
                       vocab_size=16, norm="batch", pooling="none" if per_token else "mean",
                       dropout=0.1, rngs=nnx.Rngs(params=0, dropout=1))
    tx, _ = make_optimizer(model, OptimizerSettings(lr=1e-2, weight_decay=0.1,
                                                    recurrent_lr_factor=0.5, steps=10))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    rng = np.random.default_rng(0)
    batch = {"inputs": rng.integers(1, 16, (8, 32)).astype(np.int32),
             "lengths": rng.integers(5, 33, 8).astype(np.int32),
             "labels": rng.integers(0, 10, 8).astype(np.int32)}
    if per_token:  # the first device's half scores every step, the second's one in four
        labels = rng.integers(0, 10, (8, 32)).astype(np.int32)
        labels[4:, np.arange(32) % 4 != 0] = -1
        batch["labels"] = labels
    step = make_train_step(graphdef, tx, dual=False, seed=0)
    fresh = lambda: jax.tree.map(jnp.copy, (params, rest, tx.init(params)))
    single_dev = jax.devices()[0]
    (p1, r1, _), m1 = step(jax.device_put(fresh(), single_dev),
                           jax.device_put(batch, single_dev), 0)
    sharded = shard_batch(batch, data_sharding())
    assert len(sharded["inputs"].sharding.device_set) == 2
    (p2, r2, _), m2 = step(fresh(), sharded, 0)
    np.testing.assert_allclose(float(m1["loss"]), float(m2["loss"]), rtol=1e-6)
    np.testing.assert_allclose(float(m1["grad_norm"]), float(m2["grad_norm"]), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    stats = lambda r: [x for x in jax.tree.leaves(nnx.split_state(r, nnx.BatchStat, ...)[0])]
    for a, b in zip(stats(r1), stats(r2)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    print("OK", float(m1["loss"]), float(m2["loss"]))
""")


@pytest.mark.parametrize("scan_method, task", [("auto", "per_token"), ("native", "sequence")])
def test_sharded_step_equals_single_device_step(scan_method, task):
    """Both the XLA loop (``auto`` on a mesh) and the native kernel (whose operands XLA
    gathers onto each device) give the single-device step's numbers, for a per-token
    batch's masked loss and a sequence batch's loss (BatchNorm's statistics in both: the
    library computes them; only the harness refuses them for per-token tasks)."""
    env = {**os.environ, "XLA_FLAGS": xla_flags("--xla_force_host_platform_device_count=2"),
           "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, scan_method, task], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("OK")
