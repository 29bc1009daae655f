"""Tests for Griffin's blocks (``lru.griffin.blocks``, ``lru.griffin.attention``,
``lru.griffin.segments``): each against a float64 NumPy version written here from the
reference's description (document masks included), the decode path of each temporal block
against its parallel form, and the Hawk/Griffin block patterns.

Shapes are tiny and seeds fixed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lru.griffin import GriffinConfig, GriffinLM, griffin_pattern, hawk_pattern
from lru.griffin.attention import LocalAttention, apply_rope, local_attention
from lru.griffin.blocks import Conv1D, MLPBlock, RecurrentBlock, ResidualBlock, RMSNorm
from lru.griffin.segments import document_starts, left_padded_positions, reverse_valid

B, T = 2, 11
#: Row 0: one document; row 1: documents starting at t = 0, 3 and 8.
SEG = np.array([np.arange(T), [0, 1, 2, 0, 1, 2, 3, 4, 0, 1, 2]])


def as64(x) -> np.ndarray:
    return np.asarray(x, np.float64)


def normal(seed, shape):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def gelu(x):  # the tanh approximation (jax.nn.gelu's and the reference's default)
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def same_document(seg_row: np.ndarray, k: int, q: int) -> bool:
    """No document starts in (k, q]: token q may read token k <= q."""
    return not any(seg_row[j] == 0 for j in range(k + 1, q + 1))


# --------------------------------------------------------------------------- segments


def test_document_starts_positions_and_reversal():
    np.testing.assert_array_equal(document_starts(jnp.asarray(SEG)),
                                  [np.arange(0, 1).repeat(T), [0, 0, 0, 3, 3, 3, 3, 3, 8, 8, 8]])
    np.testing.assert_array_equal(document_starts(jnp.array([[-1, -1, 0, 1], [5, 6, 0, 1]])),
                                  [[-1, -1, 2, 2], [-1, -1, 2, 2]])
    np.testing.assert_array_equal(left_padded_positions(jnp.array([2, 4]), 4),
                                  [[-1, -1, 0, 1], [0, 1, 2, 3]])
    x = jnp.arange(10).reshape(2, 5)
    r = reverse_valid(x, jnp.array([3, 5]))
    np.testing.assert_array_equal(r, [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]])
    np.testing.assert_array_equal(reverse_valid(r, jnp.array([3, 5])), x)


# --------------------------------------------------------------------------- norm, MLP


def test_rmsnorm_scales_by_one_plus_scale():
    norm = RMSNorm(6)
    x = normal(0, (3, 6))
    ref = as64(x) / np.sqrt(np.mean(as64(x) ** 2, -1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(norm(x), ref, rtol=1e-5)  # scale starts at 0
    norm.scale[...] = jnp.arange(6, dtype=jnp.float32)
    np.testing.assert_allclose(norm(x), ref * (1 + np.arange(6)), rtol=1e-5)


def test_mlp_is_geglu_with_expansion_three():
    mlp = MLPBlock(4, 12, rngs=nnx.Rngs(0))
    assert mlp.ffw_up["w"].shape == (2, 4, 12) and mlp.ffw_up["b"].shape == (2, 12)
    mlp.ffw_up["b"][...] = normal(1, (2, 12))
    x = normal(2, (2, 3, 4))
    w, b = as64(mlp.ffw_up["w"][...]), as64(mlp.ffw_up["b"][...])
    h = gelu(as64(x) @ w[0] + b[0]) * (as64(x) @ w[1] + b[1])
    ref = h @ as64(mlp.ffw_down.kernel[...]) + as64(mlp.ffw_down.bias[...])
    np.testing.assert_allclose(mlp(x), ref, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- Conv1D


def reference_conv(x, w, b, seg):
    """y_t = b + sum_s w[k-1-s] x_{t-s} over the s with no document start in (t-s, t]."""
    x, w = as64(x), as64(w)
    k = w.shape[0]
    y = np.zeros_like(x) + as64(b)
    for i in range(x.shape[0]):
        for t in range(x.shape[1]):
            for s in range(k):
                if t - s >= 0 and same_document(seg[i], t - s, t):
                    y[i, t] += w[k - 1 - s] * x[i, t - s]
    return y


def test_conv1d_is_causal_depthwise_and_stops_at_document_starts():
    conv = Conv1D(5, 4, rngs=nnx.Rngs(0))
    conv.b[...] = normal(1, (5,))
    x = normal(2, (B, T, 5))
    y, cache = conv(x, jnp.asarray(SEG))
    np.testing.assert_allclose(y, reference_conv(x, conv.w[...], conv.b[...], SEG),
                               rtol=1e-5, atol=1e-6)
    # the cache: the last 3 inputs, zeroed before the last token's document (row 1: t >= 8)
    np.testing.assert_allclose(cache[0], x[0, -3:])
    np.testing.assert_allclose(cache[1], x[1, -3:])
    _, cache = conv(x[:, :10], jnp.asarray(SEG[:, :10]))
    np.testing.assert_allclose(cache[1], np.concatenate([np.zeros((1, 5)), x[1, 8:10]]))
    # short prompts are zero-padded on the left
    _, cache = conv(x[:, :2], jnp.asarray(SEG[:, :2]))
    np.testing.assert_allclose(cache[:, 0], 0.0)


def test_conv1d_decoding_equals_the_parallel_form():
    conv = Conv1D(5, 4, rngs=nnx.Rngs(3))
    x, seg = normal(4, (B, T, 5)), jnp.asarray(SEG)
    y, last = conv(x, seg)
    out, cache = conv(x[:, :2], seg[:, :2])
    outs = [out]
    for t in range(2, T):
        y_t, cache = conv(x[:, t:t + 1], seg[:, t:t + 1], cache)
        outs.append(y_t)
    np.testing.assert_allclose(jnp.concatenate(outs, 1), y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cache, last, rtol=1e-6)


# --------------------------------------------------------------------------- attention


def reference_rope(x, pos, max_wavelength=10_000):
    """The reference's _apply_rope in float64: rotate the first half, in two quarters."""
    x = as64(x)
    e = x.shape[-1]
    rot, rest = x[..., : e // 2], x[..., e // 2:]
    inv = 1.0 / max_wavelength ** (2 * np.arange(e // 4) / (e // 2))
    ang = as64(pos).reshape(pos.shape + (1,) * (x.ndim - 2)) * inv
    x1, x2 = rot[..., : e // 4], rot[..., e // 4:]
    return np.concatenate([x1 * np.cos(ang) - x2 * np.sin(ang),
                           x2 * np.cos(ang) + x1 * np.sin(ang), rest], -1)


def test_rope_turns_the_first_half_by_relative_position():
    q = normal(0, (1, 5, 3, 8))
    pos = jnp.array([[0, 1, 5, 9, 30]])
    np.testing.assert_allclose(apply_rope(q, pos), reference_rope(q, np.asarray(pos)),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(apply_rope(q, pos)[..., 4:], q[..., 4:])
    # q_m . k_n depends on m - n only
    qv, kv = normal(1, (1, 1, 8)), normal(2, (1, 1, 8))

    def score(m, n):
        return float(jnp.sum(apply_rope(qv, jnp.array([[m]])) * apply_rope(kv, jnp.array([[n]]))))

    assert score(7, 3) == pytest.approx(score(14, 10), rel=1e-4)
    assert score(7, 3) != pytest.approx(score(7, 4), rel=1e-3)
    with pytest.raises(ValueError, match="divisible by 4"):
        apply_rope(normal(3, (1, 2, 6)), jnp.zeros((1, 2), jnp.int32))


def reference_local_attention(q, k, v, seg, window):
    """Masked softmax attention of the reference: causal, within the window, same document."""
    q, k, v = as64(q), as64(k), as64(v)
    b, t, h, e = q.shape
    out = np.zeros_like(q)
    for i in range(b):
        for qi in range(t):
            ks = [kj for kj in range(qi + 1) if qi - kj <= window and same_document(seg[i], kj, qi)]
            logits = np.einsum("he,se->hs", q[i, qi], k[i, ks]) / np.sqrt(e)
            p = np.exp(logits - logits.max(-1, keepdims=True))
            out[i, qi] = (p / p.sum(-1, keepdims=True)) @ v[i, ks]
    return out


@pytest.mark.parametrize("window", [1, 3, 4, 20])
def test_local_attention_masks_window_causality_and_documents(window):
    q, k, v = normal(0, (B, T, 2, 8)), normal(1, (B, T, 8)), normal(2, (B, T, 8))
    got = local_attention(q, k, v, document_starts(jnp.asarray(SEG)), window)
    np.testing.assert_allclose(got, reference_local_attention(q, k, v, SEG, window),
                               rtol=1e-5, atol=1e-6)


def test_attention_block_is_multi_query_and_decodes_past_the_window():
    att = LocalAttention(16, 2, window=3, rngs=nnx.Rngs(0))
    assert att.proj_k.kernel.shape == (16, 8) and att.proj_v.kernel.shape == (16, 8)
    assert att.proj_q.kernel.shape == (16, 16) and att.proj_q.bias is None
    x, seg = normal(5, (B, T, 16)), jnp.asarray(SEG)
    y, last = att(x, seg)
    q = apply_rope(att.proj_q(x).reshape(B, T, 2, 8), seg)
    k, v = apply_rope(att.proj_k(x), seg), att.proj_v(x)
    ref = reference_local_attention(q, k, v, SEG, 3).reshape(B, T, 16)
    np.testing.assert_allclose(y, ref @ as64(att.proj_final.kernel[...])
                               + as64(att.proj_final.bias[...]), rtol=1e-4, atol=1e-5)
    out, cache = att(x[:, :2], seg[:, :2])
    outs = [out]
    for t in range(2, T):
        y_t, cache = att(x[:, t:t + 1], seg[:, t:t + 1], cache)
        outs.append(y_t)
        assert cache.keys.shape == (B, 3, 8)  # the ring buffer never grows
    np.testing.assert_allclose(jnp.concatenate(outs, 1), y, rtol=1e-5, atol=1e-5)
    for a, b in zip(cache, last):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="one token at a time"):
        att(x[:, :2], seg[:, :2], cache)


# --------------------------------------------------------------------------- blocks


def test_recurrent_block_joins_a_gelu_branch_and_a_conv_rglru_branch():
    block = RecurrentBlock(8, 12, 2, rngs=nnx.Rngs(0))
    x, seg = normal(6, (B, T, 8)), jnp.asarray(SEG)
    y, cache = block(x, seg)
    gate = jax.nn.gelu(block.linear_y(x))
    z, _ = block.conv_1d(block.linear_x(x), seg)
    z, h = block.rg_lru(z, seg)
    np.testing.assert_allclose(y, block.linear_out(z * gate), rtol=1e-6)
    assert cache.rg_lru.shape == (B, 12) and cache.conv1d.shape == (B, 3, 12)
    np.testing.assert_allclose(cache.rg_lru, h)


def test_residual_block_is_prenorm_temporal_then_mlp():
    for kind in ("recurrent", "attention"):
        block = ResidualBlock(8, kind, num_heads=2, mlp_expanded_width=24, attention_window=4,
                              rngs=nnx.Rngs(1))
        assert hasattr(block, f"{kind}_block")
        block.temporal_pre_norm.scale[...] = normal(2, (8,))
        x, seg = normal(3, (B, T, 8)), jnp.asarray(SEG)
        y, _ = block(x, seg)
        r = x + getattr(block, f"{kind}_block")(block.temporal_pre_norm(x), seg)[0]
        np.testing.assert_allclose(y, r + block.mlp_block(block.channel_pre_norm(r)),
                                   rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="block_type"):
        ResidualBlock(8, "mlp", num_heads=2, mlp_expanded_width=24, rngs=nnx.Rngs(0))


def test_bidirectional_block_adds_a_reverse_reader_and_refuses_to_decode():
    block = ResidualBlock(8, "recurrent", num_heads=2, mlp_expanded_width=24,
                          bidirectional=True, rngs=nnx.Rngs(4))
    x = normal(5, (2, 6, 8))
    seg = jnp.broadcast_to(jnp.arange(6), (2, 6))
    lengths = jnp.array([6, 4])
    y, cache = block(x.at[1, 4:].set(50.0), seg, reverse_lengths=lengths)
    alone, _ = block(x[1:, :4], seg[1:, :4])  # no padding: reversal of the whole row
    np.testing.assert_allclose(y[1, :4], alone[0], rtol=1e-5, atol=1e-5)
    # the second row's first step depends on its later steps
    y2, _ = block(x.at[1, 3].add(1.0), seg, reverse_lengths=lengths)
    assert float(jnp.abs(y2[1, 0] - y[1, 0]).max()) > 1e-4
    with pytest.raises(ValueError, match="cannot decode"):
        block(x[:, :1], seg[:, :1], cache)


def test_hawk_and_griffin_patterns():
    assert hawk_pattern(3) == ("recurrent",) * 3
    assert griffin_pattern(7) == ("recurrent", "recurrent", "attention") * 2 + ("recurrent",)
    cfg = GriffinConfig(vocab_size=10, width=8, mlp_expanded_width=24, num_heads=2,
                        block_types=griffin_pattern(6), attention_window_size=4)
    model = GriffinLM(cfg, rngs=nnx.Rngs(0))
    kinds = ["attention" if hasattr(b, "attention_block") else "recurrent" for b in model.blocks]
    assert tuple(kinds) == griffin_pattern(6)
    with pytest.raises(ValueError, match="block_types"):
        GriffinConfig(vocab_size=10, width=8, mlp_expanded_width=24, num_heads=2,
                      block_types=("recurrent", "mlp"))
    with pytest.raises(ValueError, match="must divide"):
        GriffinConfig(vocab_size=10, width=8, mlp_expanded_width=24, num_heads=3,
                      block_types=hawk_pattern(2))
