"""``trainer.precision=bf16``: bfloat16 matmul operands, float32 accumulation and results,
float32 parameters and recurrence; checked against an independent float64 product of the
rounded operands, and by reading the traced program's dot products."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hydra import compose, initialize_config_dir

import tasks
from lru.training.config import register, validate
from lru.training.registry import LAYERS
from lru.layers import LRU, S5
from lru.training.registry import build_model
from lru.precision import PRECISIONS, check_precision, matmul

REPO = Path(__file__).resolve().parents[1]
register()


def dot_operand_dtypes(fn, *args) -> list[tuple[str, str, str]]:
    """(lhs, rhs, out) dtypes of every dot_general in ``fn``'s jaxpr, nested ones included."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                found.append(tuple(str(v.aval.dtype) for v in (*eqn.invars, *eqn.outvars)))
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def test_bf16_matmul_is_the_float64_product_of_rounded_operands():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 7, 64)).astype(np.float32)
    w = rng.standard_normal((64, 24)).astype(np.float32)
    y = matmul(jnp.asarray(x), jnp.asarray(w), "bf16")
    assert y.dtype == jnp.float32 and y.shape == (4, 7, 24)
    rounded = lambda a: np.asarray(jnp.asarray(a).astype(jnp.bfloat16).astype(jnp.float32), np.float64)  # noqa: E731
    np.testing.assert_allclose(np.asarray(y), rounded(x) @ rounded(w), rtol=1e-5, atol=1e-4)
    # and the rounding is real: the float32 product differs by bfloat16-sized errors
    exact = x.astype(np.float64) @ w.astype(np.float64)
    assert 1e-4 < np.max(np.abs(np.asarray(y) - exact)) / np.max(np.abs(exact)) < 3e-2
    np.testing.assert_allclose(np.asarray(matmul(x, w, "fp32")), exact, rtol=1e-4, atol=1e-4)


def test_unknown_precision_names_the_choices():
    with pytest.raises(ValueError, match=r"choose one of \('fp32', 'bf16'\)"):
        check_precision("fp16")
    assert PRECISIONS == ("fp32", "bf16")


@pytest.mark.parametrize("layer", [LRU, S5])
def test_layer_in_bf16_runs_its_matmuls_in_bf16_and_stays_close_to_fp32(layer):
    u = jax.random.normal(jax.random.key(0), (2, 32, 16))
    f32 = layer(16, 8, bidirectional=True, rngs=nnx.Rngs(0))
    b16 = layer(16, 8, bidirectional=True, precision="bf16", rngs=nnx.Rngs(0))
    y32, y16 = f32(u), b16(u)
    assert y16.dtype == jnp.float32
    rel = float(jnp.max(jnp.abs(y16 - y32)) / jnp.max(jnp.abs(y32)))
    assert 1e-5 < rel < 3e-2, rel
    dots = dot_operand_dtypes(lambda x: b16(x), u)
    assert dots and all(d == ("bfloat16", "bfloat16", "float32") for d in dots), dots
    assert all(d == ("float32", "float32", "float32") for d in dot_operand_dtypes(lambda x: f32(x), u))
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(nnx.state(b16, nnx.Param)))


def test_trainer_precision_bf16_reaches_every_matmul_of_the_model():
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "run_dir=unused", "trainer.precision=bf16", "model.d_model=16", "model.d_state=8",
            "model.n_layers=2"])
    validate(cfg, LAYERS)
    meta = tasks.TaskMeta(name="listops", n_classes=10, max_length=32, vocab_size=16)
    model = build_model(cfg, meta)
    model.eval()  # BatchNorm reads its running statistics: nothing to write while tracing
    tokens = jnp.ones((2, 32), jnp.int32)
    dots = dot_operand_dtypes(lambda t: model(t, jnp.array([32, 20])), tokens)
    # per block: B, C (LRU) and [W1 | W2] (the GLU's one product, lru.kernels.glu); plus the head
    assert len(dots) == 2 * 3 + 1
    assert all(d == ("bfloat16", "bfloat16", "float32") for d in dots), dots
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_bad_trainer_precision_is_rejected_with_the_key():
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["run_dir=unused", "trainer.precision=fp8"])
    with pytest.raises(ValueError, match=r"trainer.precision='fp8' is not valid; choose one of"):
        validate(cfg, LAYERS)


def test_bf16_on_a_model_without_it_is_an_error_not_a_silent_fp32_run():
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "run_dir=unused", "model=hawk", "trainer.precision=bf16", "model.d_model=16",
            "model.d_state=16", "model.n_layers=1"])
    meta = tasks.TaskMeta(name="listops", n_classes=10, max_length=32, vocab_size=16)
    with pytest.raises(ValueError, match=r"trainer.precision='bf16' is not implemented for "
                                         r"model.layer='hawk'.*trainer.precision=fp32"):
        build_model(cfg, meta)
