"""Tests for ``lru.models`` and ``lru.blocks``: padding invariance, masked BatchNorm, shared
dropout, the GLU variants, the dual (retrieval) head and Flax NNX transforms.

References are independent paths: unpadded examples run one at a time without any mask,
hand-written norms / linear maps / GLUs, and finite differences for gradients. Seeds are
fixed and shapes small and reused.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lru.blocks import GLU_VARIANTS, NORMS, MaskedNorm, ResidualBlock, length_mask
from lru.ladder import RUNG_NAMES
from lru.layers import LRU
from lru.models import POOLINGS, Classifier, DualClassifier, Encoder, SequenceEncoder, pool

D_MODEL, D_STATE, N_LAYERS, N_CLASSES, VOCAB, D_INPUT = 8, 4, 2, 3, 11, 3
LENGTHS = np.array([5, 3, 5, 3])
BATCH = len(LENGTHS)
TIME = 9  # padded length of the batch


def mixer(rung="lru", bidirectional=False):
    return functools.partial(LRU, D_MODEL, D_STATE, rung=rung, bidirectional=bidirectional)


def make_classifier(*, rung="lru", bidirectional=False, seed=0, tokens=True, **kwargs):
    inputs = dict(vocab_size=VOCAB) if tokens else dict(d_input=D_INPUT)
    return Classifier(D_MODEL, N_LAYERS, N_CLASSES, mixer(rung, bidirectional),
                      rngs=nnx.Rngs(seed), **inputs, **kwargs)


def random_inputs(seed, batch, time, tokens=True):
    key = jax.random.key(seed)
    if tokens:
        return jax.random.randint(key, (batch, time), 0, VOCAB)
    return jax.random.normal(key, (batch, time, D_INPUT), jnp.float32)


def garbage_pad(inputs, lengths, time, seed, tokens=True):
    """``inputs`` cut to ``lengths`` and padded to ``time`` with garbage (never zeros)."""
    inputs = np.array(inputs)
    batch = inputs.shape[0]
    rng = np.random.default_rng(seed)
    if tokens:
        junk = rng.integers(1, VOCAB, size=(batch, time))
    else:
        junk = rng.normal(size=(batch, time, D_INPUT)) * 50 + 7
    out = junk.astype(inputs.dtype)
    for i, n in enumerate(lengths):
        out[i, :n] = inputs[i, :n]
    return jnp.asarray(out)


def set_running_stats(model, seed=99):
    """Give every BatchNorm non-trivial running statistics (instead of their 0/1 init)."""
    rng = np.random.default_rng(seed)
    n = 0
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.BatchNorm):
            d = node.mean[...].shape[0]
            node.mean[...] = jnp.asarray(rng.normal(size=d) * 0.5, jnp.float32)
            node.var[...] = jnp.asarray(rng.uniform(0.3, 3.0, size=d), jnp.float32)
            n += 1
    return n


def assert_padding_invariant(model, tokens=True, seed=1):
    """Padded batch with lengths == the unpadded examples without any lengths or mask.

    Examples of equal length are run together (unpadded) so that only three input shapes
    are compiled; in evaluation mode the batch composition cannot matter.
    """
    model.eval()
    raw = random_inputs(seed, len(LENGTHS), max(LENGTHS), tokens)
    padded = garbage_pad(raw, LENGTHS, TIME, seed + 1, tokens)
    logits = np.asarray(model(padded, jnp.asarray(LENGTHS)))
    assert logits.shape == (len(LENGTHS), N_CLASSES)
    for n in np.unique(LENGTHS):
        rows = np.flatnonzero(LENGTHS == n)
        alone = np.asarray(model(raw[rows, :n]))  # no padding, no lengths, no mask
        np.testing.assert_allclose(logits[rows], alone, rtol=1e-5, atol=1e-5)
    return raw, padded, logits


# --------------------------------------------------------------------------- 1. padding


# A strength-2 covering array over (pooling, norm, prenorm, bidirectional): every pair of
# values of every two factors occurs in some row, in 5 configurations instead of 16.
PADDING_CONFIGS = [
    ("mean", "batch", True, False),
    ("mean", "layer", False, True),
    ("last", "batch", False, True),
    ("last", "layer", True, True),
    ("last", "layer", False, False),
]


@pytest.mark.parametrize("pooling, norm, prenorm, bidirectional", PADDING_CONFIGS)
def test_padding_invariance_tokens(pooling, norm, prenorm, bidirectional):
    model = make_classifier(bidirectional=bidirectional, pooling=pooling, norm=norm,
                            prenorm=prenorm)
    assert set_running_stats(model) == (N_LAYERS if norm == "batch" else 0)
    raw, padded, logits = assert_padding_invariant(model)
    # the padding really is garbage that would change the answer if it were read
    unmasked = np.asarray(model(padded))
    assert np.max(np.abs(unmasked - logits)) > 1e-3


def test_padding_invariance_real_inputs():
    model = make_classifier(tokens=False, bidirectional=True, pooling="last")
    set_running_stats(model)
    assert_padding_invariant(model, tokens=False)


@pytest.mark.parametrize("rung", ["rnn_relu", "linear_dense", "exp"])
def test_padding_invariance_other_rungs(rung):
    model = make_classifier(rung=rung, bidirectional=True, pooling="mean")
    set_running_stats(model)
    assert_padding_invariant(model)


def test_pool_by_hand():
    x = jax.random.normal(jax.random.key(3), (BATCH, TIME, D_MODEL))
    mask = length_mask(jnp.asarray(LENGTHS), TIME)
    xn = np.asarray(x)
    mean = np.stack([xn[i, :n].mean(0) for i, n in enumerate(LENGTHS)])
    last = np.stack([xn[i, n - 1] for i, n in enumerate(LENGTHS)])
    np.testing.assert_allclose(pool(x, mask, "mean"), mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(pool(x, mask, "last"), last, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(pool(x, None, "mean"), xn.mean(1), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(pool(x, None, "last"), xn[:, -1])
    assert length_mask(None, TIME) is None
    np.testing.assert_array_equal(
        length_mask(jnp.array([0, 2]), 3), [[False, False, False], [True, True, False]])


# --------------------------------------------------------------------------- 2. dual head


@pytest.fixture(scope="module")
def dual_model():
    model = DualClassifier(D_MODEL, N_LAYERS, N_CLASSES, mixer("lru", True), vocab_size=VOCAB,
                           rngs=nnx.Rngs(5))
    set_running_stats(model)
    model.eval()
    return model


# One-by-one runs pad each pair to max(L1[i], L2[i]) = 5 and 3: the padding tests' shapes,
# so eager JAX reuses its compiled ops.
DUAL_L1, DUAL_L2 = np.array([4, 3]), np.array([5, 2])


def _dual_docs(time1, time2):
    raw1 = random_inputs(6, 2, max(DUAL_L1))
    raw2 = random_inputs(7, 2, max(DUAL_L2))
    return (raw1, raw2, garbage_pad(raw1, DUAL_L1, time1, 8 + time1),
            garbage_pad(raw2, DUAL_L2, time2, 9 + time2))


def test_dual_padding_invariance(dual_model):
    model = dual_model
    raw1, raw2, doc1, doc2 = _dual_docs(TIME, TIME)
    l1, l2 = jnp.asarray(DUAL_L1), jnp.asarray(DUAL_L2)
    logits = np.asarray(model(doc1, l1, doc2, l2))
    assert logits.shape == (2, N_CLASSES)
    for i in range(2):
        alone = model(raw1[i:i + 1, :DUAL_L1[i]], None, raw2[i:i + 1, :DUAL_L2[i]], None)
        np.testing.assert_allclose(logits[i], np.asarray(alone)[0], rtol=1e-5, atol=1e-5)
    # doc2 padded longer than doc1 (and the other way round), with other garbage: same logits
    _, _, doc1b, doc2b = _dual_docs(5, TIME)
    np.testing.assert_allclose(model(doc1b, l1, doc2b, l2), logits, rtol=1e-5, atol=1e-5)
    _, _, doc1c, doc2c = _dual_docs(TIME, 5)
    np.testing.assert_allclose(model(doc1c, l1, doc2c, l2), logits, rtol=1e-5, atol=1e-5)
    # the garbage would matter if it were read
    assert np.max(np.abs(np.asarray(model(doc1, None, doc2, None)) - logits)) > 1e-3


def test_dual_features_by_hand(dual_model):
    model = dual_model
    _, _, doc1, doc2 = _dual_docs(TIME, TIME)
    _, _, short1, short2 = _dual_docs(5, 5)
    l1, l2 = jnp.asarray(DUAL_L1), jnp.asarray(DUAL_L2)
    u = np.asarray(model.backbone(short1, l1), np.float64)
    v = np.asarray(model.backbone(short2, l2), np.float64)
    features = np.concatenate([u, v, u * v, u - v], axis=-1)
    h = features @ np.asarray(model.hidden.kernel[...]) + np.asarray(model.hidden.bias[...])
    h = np.asarray(jax.nn.gelu(jnp.asarray(h, jnp.float32)), np.float64)
    want = h @ np.asarray(model.head.kernel[...]) + np.asarray(model.head.bias[...])
    np.testing.assert_allclose(model(doc1, l1, doc2, l2), want, rtol=1e-5, atol=1e-5)
    # swapping the documents changes the logits (the features are not symmetric)
    assert np.max(np.abs(np.asarray(model(doc2, l2, doc1, l1)) - want)) > 1e-4


# --------------------------------------------------------------------------- 3. BatchNorm


@pytest.mark.parametrize("prenorm", [True, False])
def test_batchnorm_train_ignores_padding(prenorm):
    model = make_classifier(bidirectional=True, norm="batch", prenorm=prenorm, dropout=0.0)
    model.train()
    raw = random_inputs(11, len(LENGTHS), max(LENGTHS))
    short = garbage_pad(raw, LENGTHS, TIME, 12)
    long = garbage_pad(raw, LENGTHS, TIME + 7, 13)
    lengths = jnp.asarray(LENGTHS)
    m_short, m_long = nnx.clone(model), nnx.clone(model)
    x1, mask1 = m_short.backbone.sequence(short, lengths)
    x2, mask2 = m_long.backbone.sequence(long, lengths)
    assert x1.shape[1] == TIME and x2.shape[1] == TIME + 7
    valid = np.asarray(mask1)
    np.testing.assert_array_equal(np.asarray(mask2)[:, :TIME], valid)
    np.testing.assert_allclose(np.asarray(x1)[valid], np.asarray(x2)[:, :TIME][valid],
                               rtol=1e-5, atol=1e-5)
    # and the running statistics it learns from the two batches are the same
    s1 = jax.tree.leaves(nnx.state(m_short, nnx.BatchStat))
    s2 = jax.tree.leaves(nnx.state(m_long, nnx.BatchStat))
    assert len(s1) == 2 * N_LAYERS  # mean and var of one BatchNorm per block
    for a, b in zip(s1, s2):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # they moved away from their 0/1 initial values (the pass was really in training mode)
    s0 = jax.tree.leaves(nnx.state(model, nnx.BatchStat))
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(s0, s1)) > 1e-3


def test_masked_batchnorm_by_hand():
    x = np.asarray(jax.random.normal(jax.random.key(14), (BATCH, TIME, D_MODEL))) * 2 + 0.5
    mask = np.asarray(length_mask(jnp.asarray(LENGTHS), TIME))
    x[~mask] = 1e3  # garbage that would dominate the statistics if counted
    norm = MaskedNorm(D_MODEL, "batch", rngs=nnx.Rngs(0))
    scale = np.linspace(0.5, 2.0, D_MODEL).astype(np.float32)
    bias = np.linspace(-1.0, 1.0, D_MODEL).astype(np.float32)
    norm.norm.scale[...] = jnp.asarray(scale)
    norm.norm.bias[...] = jnp.asarray(bias)
    norm.train()
    out = np.asarray(norm(jnp.asarray(x), jnp.asarray(mask)))
    xv = x[mask].astype(np.float64)  # (valid positions, d)
    mean, var = xv.mean(0), xv.var(0)
    eps = norm.norm.epsilon
    want = (xv - mean) / np.sqrt(var + eps) * scale + bias
    np.testing.assert_allclose(out[mask], want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(norm.norm.mean[...], 0.1 * mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(norm.norm.var[...], 0.9 + 0.1 * var, rtol=1e-4, atol=1e-5)
    # evaluation uses the running averages
    norm.eval()
    out_eval = np.asarray(norm(jnp.asarray(x), jnp.asarray(mask)))
    ra_mean, ra_var = 0.1 * mean, 0.9 + 0.1 * var
    want_eval = (x - ra_mean) / np.sqrt(ra_var + eps) * scale + bias
    np.testing.assert_allclose(out_eval, want_eval, rtol=1e-4, atol=1e-3)


def test_bn_momentum_sets_the_running_average_weight():
    """Two training passes of a pre-norm block: running = m * running + (1 - m) * batch."""
    m = 0.6
    block = ResidualBlock(D_MODEL, Identity(), norm="batch", bn_momentum=m, prenorm=True,
                          glu="gelu", rngs=nnx.Rngs(0))
    block.train()
    mask = np.asarray(length_mask(jnp.asarray(LENGTHS), TIME))
    mean, var = np.zeros(D_MODEL), np.ones(D_MODEL)
    for seed in (16, 17):
        x = np.asarray(jax.random.normal(jax.random.key(seed), (BATCH, TIME, D_MODEL))) * 3 - 1
        block(jnp.asarray(x), jnp.asarray(mask))
        xv = x[mask].astype(np.float64)
        mean, var = m * mean + (1 - m) * xv.mean(0), m * var + (1 - m) * xv.var(0)
    np.testing.assert_allclose(block.norm.norm.mean[...], mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(block.norm.norm.var[...], var, rtol=1e-4, atol=1e-5)


def test_bn_momentum_reaches_every_block_from_the_config():
    from hydra import compose, initialize_config_dir

    from lru.training.config import register
    from lru.training.registry import build_model
    from tasks.base import TaskMeta

    register()
    conf = str(Path(__file__).resolve().parents[1] / "conf")
    meta = TaskMeta(name="listops", n_classes=3, max_length=8, vocab_size=VOCAB)
    for overrides, want in [([], 0.9), (["model.bn_momentum=0.95"], 0.95)]:
        with initialize_config_dir(config_dir=conf, version_base="1.3"):
            cfg = compose(config_name="config", overrides=[
                "model.d_model=8", "model.d_state=4", "model.n_layers=2", *overrides])
        norms = [node for _, node in nnx.iter_graph(build_model(cfg, meta))
                 if isinstance(node, nnx.BatchNorm)]
        assert len(norms) == 2 and all(n.momentum == want for n in norms)


def test_layernorm_is_per_position():
    x = jax.random.normal(jax.random.key(15), (BATCH, TIME, D_MODEL)) * 2 + 0.5
    norm = MaskedNorm(D_MODEL, "layer", rngs=nnx.Rngs(0))
    mask = length_mask(jnp.asarray(LENGTHS), TIME)
    xn = np.asarray(x, np.float64)
    want = (xn - xn.mean(-1, keepdims=True)) / np.sqrt(
        xn.var(-1, keepdims=True) + norm.norm.epsilon)
    np.testing.assert_allclose(norm(x, mask), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(norm(x), want, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- 4. dropout


class Identity(nnx.Module):
    def __call__(self, x, mask=None):
        return x


def test_dropout_shared_across_time():
    block = ResidualBlock(16, Identity(), norm="layer", prenorm=True, glu="gelu",
                          dropout=0.5, rngs=nnx.Rngs(params=0, dropout=1))
    block.train()
    shape = (4, 6, 16)
    m = np.asarray(block.drop(jnp.ones(shape)))
    np.testing.assert_array_equal(m, np.broadcast_to(m[:, :1], shape))
    assert set(np.unique(m)) == {0.0, 2.0}
    assert 0.3 < np.mean(m == 0) < 0.7
    assert np.any(m[0, 0] != m[1, 0])  # one mask per example, not one for the batch
    # through the block: y - u = drop(drop(gelu(norm(u)))), masks constant over time
    u = np.asarray(jax.random.normal(jax.random.key(16), shape), np.float64)
    normed = (u - u.mean(-1, keepdims=True)) / np.sqrt(u.var(-1, keepdims=True) + 1e-6)
    g = np.asarray(jax.nn.gelu(jnp.asarray(normed, jnp.float32)), np.float64)
    y = np.asarray(block(jnp.asarray(u, jnp.float32)), np.float64)
    ratio = (y - u) / g
    assert np.all(np.isclose(ratio, 0, atol=1e-3) | np.isclose(ratio, 4, rtol=1e-3))
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1], shape), atol=2e-3)
    assert 0.5 < np.mean(np.isclose(ratio, 0, atol=1e-3)) < 0.95  # 1 - 0.5^2 = 0.75
    block.eval()
    y = np.asarray(block(jnp.asarray(u, jnp.float32)), np.float64)
    np.testing.assert_allclose(y - u, g, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- 5. GLUs


def _linear(lin, x):
    return x @ np.asarray(lin.kernel[...], np.float64) + np.asarray(lin.bias[...], np.float64)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("prenorm", [True, False])
@pytest.mark.parametrize("glu", GLU_VARIANTS)
def test_glu_variants_by_hand(glu, prenorm, norm):
    block = ResidualBlock(D_MODEL, LRU(D_MODEL, D_STATE, rngs=nnx.Rngs(17)), norm=norm,
                          prenorm=prenorm, glu=glu, dropout=0.0, rngs=nnx.Rngs(18))
    bn = block.norm.norm
    scale = np.linspace(0.5, 1.5, D_MODEL).astype(np.float32)
    bias = np.linspace(-0.3, 0.3, D_MODEL).astype(np.float32)
    bn.scale[...], bn.bias[...] = jnp.asarray(scale), jnp.asarray(bias)
    if norm == "batch":
        ra_mean = np.linspace(-0.2, 0.4, D_MODEL).astype(np.float32)
        ra_var = np.linspace(0.5, 2.0, D_MODEL).astype(np.float32)
        bn.mean[...], bn.var[...] = jnp.asarray(ra_mean), jnp.asarray(ra_var)
    block.eval()
    u = jax.random.normal(jax.random.key(19), (BATCH, TIME, D_MODEL)) * 1.5
    mask = length_mask(jnp.asarray(LENGTHS), TIME)
    un = np.asarray(u, np.float64)

    def norm_by_hand(x):
        if norm == "batch":
            return (x - ra_mean) / np.sqrt(ra_var + bn.epsilon) * scale + bias
        return ((x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + bn.epsilon)
                * scale + bias)

    mixer_in = norm_by_hand(un) if prenorm else un
    z = np.asarray(block.mixer(jnp.asarray(mixer_in, jnp.float32), mask), np.float64)
    g = np.asarray(jax.nn.gelu(jnp.asarray(z, jnp.float32)), np.float64)
    if glu == "full_glu":
        out = _linear(block.W1, g) * _sigmoid(_linear(block.W2, g))
    elif glu == "half_glu1":
        out = g * _sigmoid(_linear(block.W2, g))
    elif glu == "half_glu2":
        out = z * _sigmoid(_linear(block.W2, g))
    else:
        out = g
    want = un + out if prenorm else norm_by_hand(un + out)
    got = np.asarray(block(u, mask))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert hasattr(block, "W1") == (glu == "full_glu")
    assert hasattr(block, "W2") == (glu != "gelu")


# --------------------------------------------------------------------------- 6. NNX


def test_tree_mode_split_merge_jit():
    model = make_classifier(bidirectional=True)
    set_running_stats(model)
    model.eval()
    x = garbage_pad(random_inputs(20, BATCH, TIME), LENGTHS, TIME, 21)
    lengths = jnp.asarray(LENGTHS)
    eager = np.asarray(model(x, lengths))
    eager_nolen = np.asarray(model(x))
    with nnx.set_graph_mode(False):
        graphdef, state = nnx.split(model)

        @jax.jit
        def f(state, x, lengths):
            return nnx.merge(graphdef, state)(x, lengths)

        np.testing.assert_allclose(f(state, x, lengths), eager, rtol=1e-5, atol=1e-5)
        got = jax.jit(lambda m, x: m(x))(model, x)
        np.testing.assert_allclose(got, eager_nolen, rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(eager - eager_nolen)) > 1e-4  # the lengths mattered


def _xent(logits, labels):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))


@pytest.mark.parametrize("rung", RUNG_NAMES)
def test_grad_over_pure_state(rung):
    model = Classifier(D_MODEL, 1, 2, mixer(rung, bidirectional=True), vocab_size=VOCAB,
                       rngs=nnx.Rngs(22))
    model.train()
    x = garbage_pad(random_inputs(23, BATCH, TIME), LENGTHS, TIME, 24)
    lengths, labels = jnp.asarray(LENGTHS), jnp.array([0, 1, 1, 0])
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit  # one compiled program (eager, every operation would be compiled apart)
    def loss(p, rest):
        # training mode: BatchNorm updates its (discarded) statistics inside the trace
        return _xent(nnx.merge(graphdef, p, rest, copy=True)(x, lengths), labels)

    grads = jax.jit(jax.grad(loss))(params, rest)
    leaves = jax.tree_util.tree_leaves_with_path(grads)
    assert len(leaves) == len(jax.tree.leaves(params)) > 0
    for path, g in leaves:
        assert np.all(np.isfinite(g)), path
        assert float(jnp.max(jnp.abs(g))) > 0, path
    # a central finite difference along the gradient direction agrees with it
    direction = jax.tree.map(lambda g: g / jnp.sqrt(sum(jnp.sum(t**2) for t in
                                                         jax.tree.leaves(grads))), grads)
    eps = 1e-2
    plus = loss(jax.tree.map(lambda p, d: p + eps * d, params, direction), rest)
    minus = loss(jax.tree.map(lambda p, d: p - eps * d, params, direction), rest)
    fd = float(plus - minus) / (2 * eps)
    norm = float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads))))
    assert fd == pytest.approx(norm, rel=3e-2)


# --------------------------------------------------------------------------- 7. errors


def test_unknown_pooling_raises():
    with pytest.raises(ValueError, match="pooling") as err:
        make_classifier(pooling="max")
    assert "'max'" in str(err.value) and all(p in str(err.value) for p in POOLINGS)
    with pytest.raises(ValueError, match="pooling") as err:
        pool(jnp.ones((1, 2, 3)), None, "max")
    assert all(p in str(err.value) for p in POOLINGS)


def test_unknown_glu_raises():
    with pytest.raises(ValueError, match="glu") as err:
        make_classifier(glu="swiglu")
    assert "swiglu" in str(err.value) and all(g in str(err.value) for g in GLU_VARIANTS)


def test_unknown_norm_raises():
    with pytest.raises(ValueError, match="norm") as err:
        make_classifier(norm="group")
    assert "group" in str(err.value) and all(n in str(err.value) for n in NORMS)
    with pytest.raises(ValueError, match="norm"):
        MaskedNorm(D_MODEL, "rms", rngs=nnx.Rngs(0))


def test_encoder_needs_exactly_one_input_kind():
    for kwargs in (dict(vocab_size=VOCAB, d_input=D_INPUT), dict()):
        with pytest.raises(ValueError) as err:
            Encoder(D_MODEL, rngs=nnx.Rngs(0), **kwargs)
        assert "vocab_size" in str(err.value) and "d_input" in str(err.value)
        with pytest.raises(ValueError, match="vocab_size"):
            SequenceEncoder(D_MODEL, 1, mixer(), rngs=nnx.Rngs(0), **kwargs)


def test_encoder_real_inputs_2d_read_as_one_channel():
    enc = Encoder(D_MODEL, d_input=1, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(25), (2, 5))
    want = np.asarray(x)[..., None] @ np.asarray(enc.embed.kernel[...]) + np.asarray(
        enc.embed.bias[...])
    np.testing.assert_allclose(enc(x), want, rtol=1e-6, atol=1e-6)
    tok = Encoder(D_MODEL, vocab_size=VOCAB, rngs=nnx.Rngs(0))
    ids = jnp.array([[0, 3, 10]])
    np.testing.assert_array_equal(tok(ids)[0], np.asarray(tok.embed.embedding[...])[[0, 3, 10]])
