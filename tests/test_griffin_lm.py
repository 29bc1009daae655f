"""Tests for the Griffin/Hawk language model (``lru.griffin.model``) and the conversion of
official RecurrentGemma parameters (``lru.griffin.convert``).

* Preset parameter counts equal the published ones, computed from shapes only; the Griffin
  paper's sizes (Table 2, 16 RG-LRU gate blocks) round to the sizes the paper prints.
* The RecurrentGemma details: embedding scale rounded in bfloat16, tied decoding, soft cap.
* A tiny random tree in the official Flax layout converts to a model whose logits equal an
  independent float64 NumPy implementation of the reference's forward pass written here
  (packed documents and left padding included); the conversion round-trips; an orbax
  checkpoint of that tree, saved as the release saves it, loads.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from lru.griffin import PRESETS, GriffinConfig, GriffinLM, count_params, griffin_pattern, preset
from lru.griffin.convert import (config_from_params, from_recurrentgemma,
                                 load_recurrentgemma_checkpoint, to_recurrentgemma)
from lru.griffin.model import PAPER_GATE_BLOCKS, PAPER_SHAPES, PAPER_SIZES, Embedder
from tests.jitted import forward

# --------------------------------------------------------------------------- counts

#: Published totals. RecurrentGemma-2B: 2,682,862,080 parameters (the Hugging Face release's
#: safetensors metadata; the paper's 2.7B), 2,027,502,080 of them outside the 256000 x 2560
#: embedding (the paper's "2B non-embedding parameters").
PUBLISHED_2B = (2_682_862_080, 2_027_502_080)
#: RecurrentGemma-9B: the Hugging Face safetensors metadata reports 9,628,553,216, which is
#: the Flax tree's count plus exactly one more 256000 x 4096 matrix (that checkpoint stores
#: the tied embedding a second time, as the output layer); the Flax tree has one table.
HF_9B = 9_628_553_216


#: :func:`count_params`, once per configuration (the 13 paper presets are counted by several
#: tests; each count builds the model abstractly, about 0.1 s per block).
cached_count = functools.lru_cache(maxsize=None)(count_params)


def closed_form_count(c: GriffinConfig) -> int:
    """Parameters of the reference's modules, counted by hand from their shapes."""
    d, m, r, h = c.width, c.mlp_expanded_width, c.lru_width or c.width, c.num_heads
    g = c.num_gate_blocks or h  # RG-LRU gate blocks
    e = d // h
    total = c.vocab_size * d + d  # embedding, final norm
    for kind in c.block_types:
        total += 2 * d + 2 * d * m + 2 * m + m * d + d  # two norms, ffw_up, ffw_down
        if kind == "recurrent":
            total += 2 * (d * r + r) + r * d + d  # linear_x, linear_y, linear_out
            total += 4 * r + r + r  # conv_1d w, b; a_param
            total += 2 * (g * (r // g) ** 2 + r)  # input_gate, a_gate
        else:
            total += d * d + 2 * d * e + d * d + d  # proj_q, proj_k, proj_v, proj_final
    return total


def test_recurrentgemma_2b_count_equals_the_published_count():
    assert count_params(preset("recurrentgemma-2b")) == PUBLISHED_2B


def test_every_preset_count_and_no_allocation():
    for name in PRESETS:
        cfg = preset(name)
        total, non_embedding = cached_count(cfg)
        assert total == closed_form_count(cfg), name
        assert total - non_embedding == cfg.vocab_size * cfg.width
    total_9b, _ = cached_count(preset("recurrentgemma-9b"))
    assert total_9b + 256_000 * 4096 == HF_9B
    # the presets are the reference's Preset values
    cfg = preset("griffin-paper-7b")
    assert (cfg.width, cfg.lru_width, cfg.num_heads, cfg.num_layers) == (4096, 5632, 32, 32)
    assert cfg.attention_window_size == 1024 and not cfg.embeddings_scale_by_sqrt_dim
    assert cfg.num_gate_blocks is None and cfg.gate_blocks == 32  # the release: one per head
    assert set(preset("hawk-paper-7b").block_types) == {"recurrent"}
    # counting builds the model abstractly: every leaf is a shape, not an array
    abstract = nnx.eval_shape(lambda: GriffinLM(preset("recurrentgemma-9b"), rngs=nnx.Rngs(0)))
    leaves = jax.tree.leaves(nnx.state(abstract))
    assert leaves and all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)
    with pytest.raises(ValueError, match="recurrentgemma-2b"):
        preset("gemma-2b")


def test_paper_presets_match_the_published_sizes():
    """Table 2's shapes with §4.1's 16 gate blocks give the paper's printed sizes."""
    published = sorted({size.params for size in PAPER_SIZES.values()})
    assert len(PAPER_SIZES) == 13 and set(PAPER_SIZES) <= set(PRESETS)
    for name, size in PAPER_SIZES.items():
        cfg = preset(name)
        width, lru_width, depth, heads = PAPER_SHAPES[name.split("-")[1]]
        assert (cfg.width, cfg.lru_width, cfg.num_layers, cfg.num_heads) == (
            width, lru_width, depth, heads), name
        assert cfg.mlp_expanded_width == 3 * width and width // heads == 128, name
        assert cfg.num_gate_blocks == PAPER_GATE_BLOCKS == 16, name
        assert (cfg.attention_window_size, cfg.embeddings_scale_by_sqrt_dim,
                cfg.logits_soft_cap) == (1024, False, 0.0), name
        expected_types = set(cfg.block_types) == ({"recurrent"} if name.startswith("hawk")
                                                  else {"recurrent", "attention"})
        assert expected_types, name
        _, non_embedding = cached_count(cfg)
        assert abs(non_embedding - size.params) <= size.tolerance, (name, non_embedding, size)
        # the check discriminates: no other printed size is as close
        assert min(published, key=lambda p: abs(non_embedding - p)) == size.params, name


def test_gate_block_count_changes_the_count_by_the_closed_form():
    """The count sees the gate blocks: 16 vs one per head differ by 2 N_rec (r²/16 - r²/h)."""
    for name in PAPER_SIZES:
        cfg = preset(name)
        r, h = cfg.lru_width, cfg.num_heads
        if r % h:  # 6, 12, 24, 40 heads: the release's gates cannot be built (module doc)
            with pytest.raises(ValueError, match=f"num_heads={h} must divide lru_width={r}"):
                dataclasses.replace(cfg, num_gate_blocks=None)
            continue
        per_head = dataclasses.replace(cfg, num_gate_blocks=None)  # the release's convention
        n_rec = cfg.block_types.count("recurrent")
        diff = cached_count(cfg)[1] - cached_count(per_head)[1]
        assert diff == 2 * n_rec * (r * r // 16 - r * r // h), name
        assert cached_count(per_head)[0] == closed_form_count(per_head), name
    # the paper's 7B shapes are the release's GRIFFIN_PAPER_7B but for the gate blocks
    paper, release = preset("griffin-7b"), preset("griffin-paper-7b")
    assert dataclasses.replace(paper, num_gate_blocks=None) == release
    assert cached_count(paper)[1] - cached_count(release)[1] == 2 * 22 * (5632**2 // 32)


def test_gate_blocks_are_validated():
    with pytest.raises(ValueError, match="num_gate_blocks=5 must be a positive divisor of "
                                         "lru_width=24"):
        tiny_config(num_gate_blocks=5)
    with pytest.raises(ValueError, match="num_heads=2 must divide lru_width=25.*num_gate_blocks"):
        tiny_config(num_heads=2, lru_width=25)  # the heads set the gates: 2 does not divide 25
    with pytest.raises(ValueError, match="num_heads=3 must divide width=16"):
        tiny_config(num_heads=3, num_gate_blocks=4)
    cfg = tiny_config(num_heads=2, lru_width=25, num_gate_blocks=5)  # heads need not divide r
    assert cfg.gate_blocks == 5 and preset("griffin-1b").gate_blocks == 16


# --------------------------------------------------------------------------- LM details


def test_embedding_scale_is_rounded_in_bfloat16_and_decoding_is_tied():
    emb = Embedder(3, 2560, scale_by_sqrt_dim=True, rngs=nnx.Rngs(0))
    table = np.asarray(emb.input_embedding[...])
    got = emb.encode(jnp.array([[2]]))[0, 0]
    np.testing.assert_array_equal(got, table[2] * np.float32(50.5))  # bf16(50.596...) = 50.5
    assert float(np.asarray(np.sqrt(2560), ml_dtypes.bfloat16)) == 50.5
    x = jnp.ones((1, 1, 2560))
    np.testing.assert_allclose(emb.decode(x)[0, 0], table.sum(-1), rtol=1e-5)


def tiny_config(**kw) -> GriffinConfig:
    base = dict(vocab_size=37, width=16, mlp_expanded_width=48, num_heads=2,
                block_types=griffin_pattern(3), lru_width=24, attention_window_size=3,
                embeddings_scale_by_sqrt_dim=True, logits_soft_cap=30.0)
    return GriffinConfig(**{**base, **kw})


def test_logits_are_soft_capped():
    capped = GriffinLM(tiny_config(), rngs=nnx.Rngs(0))
    raw = GriffinLM(tiny_config(logits_soft_cap=0.0), rngs=nnx.Rngs(0))  # same weights
    capped.embedder.input_embedding[...] *= 50.0  # push the logits past the cap
    raw.embedder.input_embedding[...] *= 50.0
    tokens = jnp.arange(10)[None] % 37
    lc, lr = forward(capped, tokens), forward(raw, tokens)
    assert float(jnp.abs(lr).max()) > 100 and float(jnp.abs(lc).max()) <= 30
    np.testing.assert_allclose(lc, 30 * np.tanh(as64(lr) / 30), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- reference forward


def as64(x) -> np.ndarray:
    return np.asarray(x, np.float64)


def official_tree(seed: int, block_types, *, vocab=37, width=16, lru=24, heads=2, mlp=48):
    """A random parameter tree in the official Flax layout (nested dicts of numpy arrays)."""
    rng = np.random.default_rng(seed)

    def w(*shape, scale=None):
        return (rng.standard_normal(shape) * (scale or 1 / np.sqrt(shape[-2] if len(shape) > 1
                                                                     else 1))).astype(np.float32)

    def dense(n_in, n_out, bias=True):
        return {"kernel": w(n_in, n_out), **({"bias": w(n_out, scale=0.1)} if bias else {})}

    tree = {"embedder": {"input_embedding": w(vocab, width, scale=1 / np.sqrt(width))},
            "final_norm": {"scale": w(width, scale=0.1)}}
    for i, kind in enumerate(block_types):
        block = {"temporal_pre_norm": {"scale": w(width, scale=0.1)},
                 "channel_pre_norm": {"scale": w(width, scale=0.1)},
                 "mlp_block": {"ffw_up": {"w": w(2, width, mlp), "b": w(2, 1, 1, mlp, scale=0.1)},
                               "ffw_down": dense(mlp, width)}}
        if kind == "recurrent":
            per_head = lru // heads
            gate = {"w": w(heads, per_head, per_head), "b": w(heads, per_head, scale=0.1)}
            block["recurrent_block"] = {
                "linear_x": dense(width, lru), "linear_y": dense(width, lru),
                "linear_out": dense(lru, width),
                "conv_1d": {"w": w(4, lru, scale=0.5), "b": w(lru, scale=0.1)},
                "rg_lru": {"a_param": rng.uniform(-4.0, 1.0, lru).astype(np.float32),
                           "input_gate": gate,
                           "a_gate": {k: v * 0.7 for k, v in gate.items()}}}
        else:
            e = width // heads
            block["attention_block"] = {"proj_q": dense(width, width, bias=False),
                                        "proj_k": dense(width, e, bias=False),
                                        "proj_v": dense(width, e, bias=False),
                                        "proj_final": dense(width, width)}
        tree[f"blocks.{i}"] = block
    return tree


def np_gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def np_rmsnorm(x, scale):
    return x / np.sqrt(np.mean(x**2, -1, keepdims=True) + 1e-6) * (1 + as64(scale))


def np_rope(x, pos):
    e = x.shape[-1]
    rot, rest = x[..., : e // 2], x[..., e // 2:]
    inv = 1.0 / 10_000 ** (2 * np.arange(e // 4) / (e // 2))
    ang = as64(pos).reshape(pos.shape + (1,) * (x.ndim - 2)) * inv
    x1, x2 = rot[..., : e // 4], rot[..., e // 4:]
    return np.concatenate([x1 * np.cos(ang) - x2 * np.sin(ang),
                           x2 * np.cos(ang) + x1 * np.sin(ang), rest], -1)


def np_recurrent(p, x, seg):
    """The reference's RecurrentBlock (Conv1D with its document mask, RG-LRU), float64."""
    lin = lambda q, z: z @ as64(q["kernel"]) + as64(q.get("bias", 0.0))  # noqa: E731
    y = np_gelu(lin(p["linear_y"], x))
    u = lin(p["linear_x"], x)
    conv_w, conv_b = as64(p["conv_1d"]["w"]), as64(p["conv_1d"]["b"])
    b, t, r = u.shape
    reset = seg == 0
    conv = np.zeros_like(u) + conv_b
    for shift in range(4):  # x[t - shift] w[3 - shift] unless a document starts in between
        for tt in range(shift, t):
            keep = ~reset[:, tt - shift + 1: tt + 1].any(-1)
            conv[:, tt] += keep[:, None] * u[:, tt - shift] * conv_w[3 - shift]
    rg = p["rg_lru"]

    def block_diag(g, z):
        zz = z.reshape(b, t, g["w"].shape[0], -1)
        return np.einsum("bthi,hij->bthj", zz, as64(g["w"])).reshape(b, t, r) + \
            as64(g["b"]).reshape(-1)

    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    gate_x, gate_a = sig(block_diag(rg["input_gate"], conv)), sig(block_diag(rg["a_gate"], conv))
    log_a = -8.0 * gate_a * np.log1p(np.exp(as64(rg["a_param"])))
    a = np.where(reset[..., None], 0.0, np.exp(log_a))
    mult = np.where(reset[..., None], 1.0, np.sqrt(1 - np.exp(2 * log_a)))
    xin = conv * gate_x * mult
    h, hs = np.zeros((b, r)), []
    for tt in range(t):
        h = a[:, tt] * h + xin[:, tt]
        hs.append(h)
    return lin(p["linear_out"], np.stack(hs, 1) * y)


def np_attention(p, x, seg, heads, window):
    """The reference's LocalAttentionBlock (segment ids, causal window mask), float64."""
    b, t, d = x.shape
    q = np_rope((x @ as64(p["proj_q"]["kernel"])).reshape(b, t, heads, -1), seg)
    k = np_rope(x @ as64(p["proj_k"]["kernel"]), seg)
    v = x @ as64(p["proj_v"]["kernel"])
    seg_id = np.cumsum(seg == 0, -1)
    pos = np.arange(t)
    mask = ((seg_id[:, :, None] == seg_id[:, None, :]) & (pos[:, None] >= pos[None, :])
            & (pos[:, None] <= pos[None, :] + window))
    logits = np.einsum("bthe,bse->bhts", q, k) / np.sqrt(q.shape[-1])
    logits = np.where(mask[:, None], logits, -np.inf)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out = np.einsum("bhts,bse->bthe", probs, v).reshape(b, t, d)
    return out @ as64(p["proj_final"]["kernel"]) + as64(p["proj_final"]["bias"])


def np_reference_logits(tree, tokens, seg, *, heads, window, cap=30.0):
    """Griffin.__call__ of the reference, from the official tree, in float64."""
    table = as64(tree["embedder"]["input_embedding"])
    width = table.shape[1]
    x = table[tokens] * float(np.asarray(np.sqrt(width), ml_dtypes.bfloat16))
    i = 0
    while f"blocks.{i}" in tree:
        p = tree[f"blocks.{i}"]
        normed = np_rmsnorm(x, p["temporal_pre_norm"]["scale"])
        if "recurrent_block" in p:
            mixed = np_recurrent(p["recurrent_block"], normed, seg)
        else:
            mixed = np_attention(p["attention_block"], normed, seg, heads, window)
        r = x + mixed
        mlp = p["mlp_block"]
        z = np_rmsnorm(r, p["channel_pre_norm"]["scale"])
        up = np.einsum("btd,cdm->cbtm", z, as64(mlp["ffw_up"]["w"])) + as64(mlp["ffw_up"]["b"])
        h = np_gelu(up[0]) * up[1]
        x = r + h @ as64(mlp["ffw_down"]["kernel"]) + as64(mlp["ffw_down"]["bias"])
        i += 1
    logits = np_rmsnorm(x, tree["final_norm"]["scale"]) @ table.T
    return cap * np.tanh(logits / cap)


TYPES = griffin_pattern(4)
HYPER = dict(attention_window_size=3, embeddings_scale_by_sqrt_dim=True, logits_soft_cap=30.0)


def test_converted_model_reproduces_the_reference_forward():
    tree = official_tree(0, TYPES)
    model = from_recurrentgemma({"params": tree}, **HYPER)
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 37, (3, 12))
    seg = np.stack([np.arange(12),                                # one document
                    np.r_[np.arange(5), np.arange(7)],             # two packed documents
                    np.r_[[-1, -1, -1], np.arange(9)]])            # left padding
    ref = np_reference_logits(tree, tokens, seg, heads=2, window=3)
    got = forward(model, jnp.asarray(tokens), jnp.asarray(seg))
    assert got.shape == (3, 12, 37)
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-4)
    assert float(np.abs(ref).max()) > 1.0  # not a trivially small comparison


def test_conversion_round_trips_and_infers_the_configuration():
    tree = official_tree(2, TYPES)
    model = from_recurrentgemma(tree, **HYPER)
    cfg = model.config
    assert (cfg.vocab_size, cfg.width, cfg.mlp_expanded_width, cfg.num_heads, cfg.lru_width,
            cfg.block_types, cfg.conv1d_temporal_width) == (37, 16, 48, 2, 24, TYPES, 4)
    back = to_recurrentgemma(model)
    flat_a = dict(jax.tree_util.tree_flatten_with_path(tree)[0])
    flat_b = dict(jax.tree_util.tree_flatten_with_path(back)[0])
    assert flat_a.keys() == flat_b.keys()
    for key, value in flat_a.items():
        np.testing.assert_array_equal(flat_b[key], value)
        assert flat_b[key].shape == value.shape
    # and back again: the same model
    tokens = jnp.arange(9)[None] % 37
    np.testing.assert_array_equal(forward(from_recurrentgemma(back, **HYPER), tokens),
                                  forward(model, tokens))


def test_hyperparameters_come_from_a_preset_or_keywords():
    tree = official_tree(3, TYPES)
    with pytest.raises(ValueError, match="attention_window_size"):
        from_recurrentgemma(tree)
    with pytest.raises(ValueError, match="preset"):
        config_from_params(tree, attention_window_size=3)
    # a Hawk tree needs no window
    hawk = official_tree(4, ("recurrent",) * 2)
    cfg = config_from_params(hawk, embeddings_scale_by_sqrt_dim=False, logits_soft_cap=0.0)
    assert cfg.block_types == ("recurrent", "recurrent") and not cfg.embeddings_scale_by_sqrt_dim
    # a preset whose shapes differ is refused, naming the difference
    with pytest.raises(ValueError, match="recurrentgemma-2b.*width is 16"):
        config_from_params(tree, "recurrentgemma-2b")
    # a 2B-shaped tree (abstract: shapes only) takes the preset's hyperparameters; keywords win
    shapes = jax.eval_shape(lambda: to_recurrentgemma(
        GriffinLM(preset("recurrentgemma-2b", vocab_size=64), rngs=nnx.Rngs(0))))
    cfg = config_from_params(shapes, "recurrentgemma-2b", attention_window_size=512)
    assert cfg == dataclasses.replace(preset("recurrentgemma-2b", vocab_size=64),
                                      attention_window_size=512)
    broken = official_tree(5, TYPES)
    del broken["blocks.1"]["recurrent_block"]["conv_1d"]
    with pytest.raises(ValueError, match="conv_1d"):
        from_recurrentgemma(broken, **HYPER)


def test_paper_shaped_model_runs_and_round_trips():
    """A Griffin-100M-like model (heads not dividing D_RNN, 16 gate blocks) converts both ways."""
    cfg = GriffinConfig(vocab_size=37, width=96, mlp_expanded_width=288, num_heads=3,
                        block_types=griffin_pattern(3), lru_width=128, num_gate_blocks=16,
                        attention_window_size=4, embeddings_scale_by_sqrt_dim=False,
                        logits_soft_cap=0.0)
    model = GriffinLM(cfg, rngs=nnx.Rngs(0))
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 37, (2, 8)))
    logits = forward(model, tokens)
    assert logits.shape == (2, 8, 37) and bool(jnp.isfinite(logits).all())
    assert model.blocks[0].recurrent_block.rg_lru.a_gate.w.shape == (16, 8, 8)
    assert model.blocks[2].attention_block.proj_k.kernel.shape == (96, 32)
    tree = to_recurrentgemma(model)
    hyper = dict(attention_window_size=4, embeddings_scale_by_sqrt_dim=False,
                 logits_soft_cap=0.0)
    back = from_recurrentgemma(tree, **hyper)
    assert back.config == cfg
    np.testing.assert_array_equal(forward(back, tokens), logits)


def test_paper_preset_trees_infer_the_preset():
    """Shapes of paper-preset trees give the preset back; a Hawk tree holds no head count."""
    trees = {}  # each traced once: the 7B ones take seconds
    for name in ("griffin-100m", "hawk-100m", "griffin-paper-7b", "hawk-paper-7b"):
        cfg = preset(name, vocab_size=64)
        trees[name] = jax.eval_shape(lambda c=cfg: to_recurrentgemma(GriffinLM(c, rngs=nnx.Rngs(0))))
        assert config_from_params(trees[name], name) == cfg, name
    griffin = trees["griffin-100m"]
    assert config_from_params(griffin, **HYPER) == GriffinConfig(
        vocab_size=64, width=768, mlp_expanded_width=2304, num_heads=6,
        block_types=griffin_pattern(12), lru_width=1024, num_gate_blocks=16, **HYPER)
    with pytest.raises(ValueError, match="griffin-paper-7b.*width is 768"):
        config_from_params(griffin, "griffin-paper-7b")
    # gate blocks differ from the preset's: refused, naming the field
    with pytest.raises(ValueError, match="griffin-7b.*num_gate_blocks is 32 in the tree but 16"):
        config_from_params(trees["griffin-paper-7b"], "griffin-7b")
    # without a preset a Hawk tree takes num_heads = its gate blocks (the release's convention)
    hawk = config_from_params(official_tree(7, ("recurrent",) * 2, heads=4),
                              embeddings_scale_by_sqrt_dim=False, logits_soft_cap=0.0)
    assert (hawk.num_heads, hawk.num_gate_blocks) == (4, None)


def test_official_orbax_checkpoint_loads(tmp_path):
    tree = official_tree(6, TYPES)
    path = tmp_path / "2b"
    ocp.PyTreeCheckpointer().save(path, {"params": tree})  # the release's save_parameters
    model = load_recurrentgemma_checkpoint(path, **HYPER)
    tokens = jnp.arange(8)[None] % 37
    np.testing.assert_array_equal(forward(model, tokens),
                                  forward(from_recurrentgemma(tree, **HYPER), tokens))
    with pytest.raises(FileNotFoundError, match="checkpoint folder"):
        load_recurrentgemma_checkpoint(tmp_path / "missing", **HYPER)


def test_language_model_runs_in_tree_mode():
    model = GriffinLM(tiny_config(), rngs=nnx.Rngs(0))
    tokens = jnp.arange(8)[None] % 37
    with nnx.set_graph_mode(False):
        got = jax.jit(lambda m, x: m(x))(model, tokens)
    np.testing.assert_allclose(got, forward(model, tokens), rtol=1e-5, atol=1e-5)
