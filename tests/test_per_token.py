"""Per-token (sequence-to-sequence) training: the masked loss and its metrics
(``lru.training.scoring``), causal per-step heads (``model.pooling=none``) for every model the
synthetic tasks use, the rules that refuse a model unfit for its task
(``lru.training.task_rules``), batching of ``(e, t)`` targets, and ``train(cfg)`` end to end
on a small per-token task registered for the test.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import tasks
from lru.training.batching import eval_batches, make_batch
from lru.training.loop import evaluate, make_eval_step, train
from lru.training.registry import BACKBONES, build_model
from lru.training.scoring import batch_metrics, example_scores
from tasks.base import majority_rate
from lru.training.task_rules import check_model_fits_task
from tasks.base import IGNORE, Split, Task, TaskMeta, require
from tests.jitted import forward
from tests.tiny import compose_cfg, tiny_overrides

VOCAB = 8


def per_token_meta(max_length: int = 32, **kw) -> TaskMeta:
    return TaskMeta(name="echo", n_classes=VOCAB, max_length=max_length, vocab_size=VOCAB,
                    per_token=True, **kw)


# --------------------------------------------------------------------------- 1. the masked loss


def scored_batch(seed=0, b=4, t=6, c=5):
    """Random logits and targets with about half the positions unscored (IGNORE)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(b, t, c)).astype(np.float32)
    labels = rng.integers(0, c, (b, t)).astype(np.int32)
    labels[rng.random((b, t)) < 0.5] = IGNORE
    labels[:, 0] = rng.integers(0, c, b)  # every example has a scored position
    return logits, labels


def reference_metrics(logits, labels):
    """The metrics from the scored positions alone, in numpy."""
    scored = labels != IGNORE
    z = logits[scored]
    log_probs = z - z.max(-1, keepdims=True)
    log_probs = log_probs - np.log(np.exp(log_probs).sum(-1, keepdims=True))
    right = np.argmax(logits, -1) == labels
    return {"loss": float(-log_probs[np.arange(len(z)), labels[scored]].mean()),
            "accuracy": float(right[scored].mean()),
            "sequence_accuracy": float(np.mean([(right[i] | ~scored[i]).all()
                                                for i in range(len(labels))]))}


def test_masked_loss_reads_scored_positions_only():
    logits, labels = scored_batch()
    scored = labels != IGNORE
    got = {k: float(v) for k, v in batch_metrics(jnp.asarray(logits), jnp.asarray(labels)).items()}
    want = reference_metrics(logits, labels)
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), key
    # logits at unscored positions, however large (IGNORE must never index class -1, the
    # last one), change nothing
    moved = logits.copy()
    moved[~scored] = np.random.default_rng(1).normal(size=moved[~scored].shape) * 100
    moved[~scored, -1] = 1e4
    same = {k: float(v) for k, v in batch_metrics(jnp.asarray(moved), jnp.asarray(labels)).items()}
    assert same == got
    # nor does what the data holds there: the targets at unscored positions stay out of it
    # (replacing the scored targets by IGNORE everywhere else is what a task stores)
    full = np.where(scored, labels, np.random.default_rng(2).integers(0, 5, labels.shape))
    assert np.array_equal(np.where(scored, full, IGNORE), labels)
    # and unscored positions get no gradient
    grads = jax.grad(lambda z: batch_metrics(z, jnp.asarray(labels))["loss"])(jnp.asarray(logits))
    assert np.all(np.asarray(grads)[~scored] == 0) and np.any(np.asarray(grads)[scored] != 0)
    # a scored position's logits or target does change them
    i, j = np.argwhere(scored)[0]
    bumped = logits.copy()
    bumped[i, j, labels[i, j]] += 5.0
    assert float(batch_metrics(jnp.asarray(bumped), jnp.asarray(labels))["loss"]) < got["loss"]
    relabelled = labels.copy()
    guess = int(np.argmax(logits[i, j]))  # the new target turns a right answer wrong or back
    relabelled[i, j] = guess if labels[i, j] != guess else (guess + 1) % 5
    changed = batch_metrics(jnp.asarray(logits), jnp.asarray(relabelled))
    assert float(changed["loss"]) != pytest.approx(got["loss"])
    assert float(changed["accuracy"]) != pytest.approx(got["accuracy"])


def test_example_scores_count_sequences_right_only_when_every_scored_position_is():
    logits = np.zeros((3, 4, 3), np.float32)
    logits[..., 1] = 1.0  # predicts class 1 everywhere
    labels = np.array([[1, IGNORE, 1, IGNORE],       # all right
                       [1, 2, IGNORE, IGNORE],       # one wrong
                       [IGNORE] * 4], np.int32)      # none scored: vacuously right
    s = {k: np.asarray(v) for k, v in example_scores(jnp.asarray(logits), jnp.asarray(labels)).items()}
    np.testing.assert_array_equal(s["scored"], [2, 2, 0])
    np.testing.assert_array_equal(s["correct"], [2, 1, 0])
    np.testing.assert_array_equal(s["all_correct"], [1, 0, 1])
    assert s["loss"][2] == 0.0 and s["loss"][0] > 0
    # a sequence task's example is one scored position: the usual mean cross-entropy
    seq_logits, seq_labels = logits[:, 0], np.array([1, 0, 2], np.int32)
    m = batch_metrics(jnp.asarray(seq_logits), jnp.asarray(seq_labels))
    want = reference_metrics(seq_logits[:, None], seq_labels[:, None])
    assert float(m["loss"]) == pytest.approx(want["loss"], rel=1e-6)
    assert float(m["accuracy"]) == pytest.approx(1 / 3)


def test_majority_rate_counts_scored_positions():
    labels = np.array([[3, 3, IGNORE, IGNORE], [2, IGNORE, IGNORE, IGNORE]], np.int32)
    split = Split(inputs=np.ones((2, 4), np.int32), lengths=np.array([4, 2], np.int32),
                  labels=labels, meta=per_token_meta(4))
    assert majority_rate(split) == pytest.approx(2 / 3)
    seq = Split(inputs=np.ones((3, 4), np.int32), lengths=np.full(3, 4, np.int32),
                labels=np.array([0, 1, 1], np.int32), meta=TaskMeta("s", 2, 4, vocab_size=4))
    assert majority_rate(seq) == pytest.approx(2 / 3)


# --------------------------------------------------------------------------- 2. the echo task


def echo_arrays(n: int, max_length: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` sequences of 6..20 tokens; the target at each odd position is the token there,
    every other position (and padding) IGNORE."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(6, 21, n).astype(np.int32)
    valid = np.arange(max_length)[None] < lengths[:, None]
    inputs = np.where(valid, rng.integers(1, VOCAB, (n, max_length)), 0).astype(np.int32)
    labels = np.where(valid & (np.arange(max_length) % 2 == 1)[None], inputs, IGNORE)
    return {"inputs": inputs, "lengths": lengths, "labels": labels.astype(np.int32)}


def echo_split(n=24, seed=0) -> Split:
    return Split(meta=per_token_meta(), **echo_arrays(n, 32, seed))


ECHO = Task(
    name="echo", defaults={"max_length": 32},
    meta=lambda o: per_token_meta(o["max_length"]),
    sources=lambda data_dir, split, o: [require(data_dir)],
    build=lambda data_dir, split, o: echo_arrays({"train": 480, "val": 60, "test": 70}[split],
                                                 o["max_length"], tasks.SPLITS.index(split)))


@pytest.fixture
def echo_task(monkeypatch):
    """The echo task registered as ``task.name=echo`` for the test."""
    monkeypatch.setitem(tasks.registry.TASKS, "echo", ECHO)
    monkeypatch.setattr(tasks, "TASK_NAMES", (*tasks.TASK_NAMES, "echo"))
    return ECHO


def test_batches_cut_targets_to_the_bucket_like_the_inputs():
    split = echo_split()
    short = np.argsort(split.lengths)[:4]
    batch = make_batch(split, short)
    assert batch["inputs"].shape == batch["labels"].shape == (4, 16)  # lengths <= 16: bucket 16
    np.testing.assert_array_equal(batch["labels"], split.labels[short, :16])
    assert np.all(split.labels[short, 16:] == IGNORE)  # what was cut scored nothing


def test_evaluation_counts_every_scored_position_once():
    """Per-example weights zero the padding copies of the last evaluation batch: the split's
    metrics equal those of all its examples at once."""
    cfg = compose_cfg(["run_dir=unused", "model.d_model=8", "model.d_state=8",
                       "model.n_layers=1", "model.norm=layer", "model.pooling=none"])
    split = echo_split(n=11)
    model = build_model(cfg, split.meta)
    model.eval()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    got = evaluate(make_eval_step(graphdef, dual=False), params, rest, split, batch_size=4)
    weights = np.concatenate([b["weights"] for b in eval_batches(split, 4)])
    assert len(weights) == 12 and weights.sum() == 11  # the last batch holds one padding copy
    logits = np.asarray(forward(model, jnp.asarray(split.inputs), jnp.asarray(split.lengths)))
    want = reference_metrics(logits, np.asarray(split.labels))
    assert set(got) == {"loss", "accuracy", "sequence_accuracy"}
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), key


# --------------------------------------------------------------------------- 3. causality

#: Every model the synthetic tasks use: (overrides, name); MQA's attention is global over
#: the task's 32 steps, Griffin's local window (4) shorter than the 12 steps used.
CAUSAL_MODELS = [
    (["model=lru", "ablation=rnn_tanh"], "lru/rnn_tanh"),
    (["model=lru", "ablation=diag_complex"], "lru/diag_complex"),
    (["model=lru", "ablation=lru"], "lru/lru"),
    (["model=s5"], "s5"),
    (["model=s4d"], "s4d"),
    (["model=hawk"], "hawk"),
    (["model=griffin", "model.layer_options.attention_window=4"], "griffin"),
    (["model=mqa"], "mqa"),
]

TIME, CHANGED = 12, (5, 9)


def per_token_cfg(overrides: list[str]):
    """A tiny per-token model config: width 8, two blocks, layer norm (harness blocks)."""
    cfg = compose_cfg(["run_dir=unused", *overrides, "model.d_model=8", "model.d_state=8",
                       "model.n_layers=2", "model.pooling=none"])
    if cfg.model.layer not in BACKBONES:  # Griffin's blocks have their own norm
        cfg.model.norm = "layer"
    return cfg


def earliest_change(model, j: int) -> tuple[float, float]:
    """The largest change of the logits before step ``j`` and from ``j`` on when the token at
    ``j`` changes (the model in training mode)."""
    rng = np.random.default_rng(j)
    tokens = rng.integers(1, VOCAB, (2, TIME)).astype(np.int32)
    other = tokens.copy()
    other[:, j] = tokens[:, j] % (VOCAB - 1) + 1  # another token, never padding
    lengths = jnp.full((2,), TIME, jnp.int32)
    a = np.asarray(forward(model, jnp.asarray(tokens), lengths))
    b = np.asarray(forward(model, jnp.asarray(other), lengths))
    assert a.shape == (2, TIME, VOCAB)
    return float(np.abs(a - b)[:, :j].max()), float(np.abs(a - b)[:, j:].max())


@pytest.mark.parametrize("overrides", [m[0] for m in CAUSAL_MODELS],
                         ids=[m[1] for m in CAUSAL_MODELS])
def test_per_step_logits_are_causal(overrides):
    cfg = per_token_cfg(overrides)
    meta = per_token_meta()
    check_model_fits_task(cfg, meta)  # the config the rules accept ...
    model = build_model(cfg, meta)
    model.train()
    for j in CHANGED:  # ... predicts each step from the steps up to it only
        before, after = earliest_change(model, j)
        assert before < 1e-5, (j, before)
        assert after > 1e-4, (j, after)


@pytest.mark.parametrize("key, value", [("bidirectional", True), ("norm", "batch")])
def test_what_the_rules_refuse_reads_the_future(key, value):
    """The rules' reasons hold: these models' early logits move with a later token."""
    cfg = per_token_cfg(["model=lru"])
    cfg.model[key] = value
    with pytest.raises(ValueError, match=f"model.{key}"):
        check_model_fits_task(cfg, per_token_meta())
    model = build_model(cfg, per_token_meta())
    model.train()
    before, _ = earliest_change(model, CHANGED[0])
    assert before > 1e-4


# --------------------------------------------------------------------------- 4. the rules


@pytest.mark.parametrize("overrides, meta_kw, key", [
    (["model.pooling=mean"], {}, "model.pooling='mean'"),
    (["model.pooling=last"], {}, "model.pooling='last'"),
    (["model.bidirectional=true"], {}, "model.bidirectional=true"),
    (["model.norm=batch"], {}, "model.norm='batch'"),
    ([], {"dual": True}, "two documents"),
])
def test_each_per_token_rule_names_its_key(overrides, meta_kw, key):
    cfg = compose_cfg(["run_dir=unused", "model.norm=layer", "model.pooling=none", *overrides])
    with pytest.raises(ValueError, match="echo") as err:
        check_model_fits_task(cfg, per_token_meta(**meta_kw))
    assert key in str(err.value)
    assert str(err.value).count("\n  - ") == 1  # that rule alone


def test_the_rules_accept_a_causal_config_and_refuse_per_step_heads_on_sequence_tasks():
    for model in ("lru", "s5", "s4d", "hawk", "griffin", "mqa"):
        check_model_fits_task(per_token_cfg([f"model={model}"]), per_token_meta())
    # Hawk/Griffin's blocks never read model.norm (its default 'batch' stays)
    assert per_token_cfg(["model=hawk"]).model.norm == "batch"
    cfg = compose_cfg(["run_dir=unused"])
    check_model_fits_task(cfg, TaskMeta("listops", 10, 16, vocab_size=20))
    cfg.model.pooling = "none"
    with pytest.raises(ValueError, match="model.pooling='none'.*one label per sequence"):
        check_model_fits_task(cfg, TaskMeta("listops", 10, 16, vocab_size=20))


def test_an_unfit_model_fails_the_run_before_any_data_is_made(tmp_path):
    data = tmp_path / "data"
    cfg = compose_cfg(tiny_overrides(data, tmp_path / "run") + ["model.pooling=none"])
    summary = train(cfg)
    assert summary["status"] == "failed"
    assert "model.pooling='none'" in summary["reason"] and "listops" in summary["reason"]
    assert not data.exists()  # refused before the generator ran


# --------------------------------------------------------------------------- 5. end to end


def test_train_learns_a_per_token_task(tmp_path, echo_task):
    run = tmp_path / "run"
    (tmp_path / "data").mkdir()
    cfg = compose_cfg([
        f"run_dir={run}", f"task.data_dir={tmp_path / 'data'}",
        f"task.cache_dir={tmp_path / 'cache'}", "model.d_model=16", "model.d_state=16",
        "model.n_layers=1", "model.norm=layer", "model.pooling=none", "optimizer.lr=0.01",
        "trainer.steps=60", "trainer.batch_size=16", "trainer.eval_every=30",
        "trainer.log_every=10", "trainer.eval_batch_size=40", "trainer.progress=false",
        "trainer.checkpoint=false"])
    cfg.task.name, cfg.task.generate, cfg.task.options = "echo", None, {}
    summary = train(cfg)
    assert summary["status"] == "finished", summary.get("reason")
    records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        assert np.isfinite(r["loss"]) and 0.0 <= r["accuracy"] <= 1.0, r
        assert 0.0 <= r["sequence_accuracy"] <= 1.0, r
    assert {r["split"] for r in records} == {"train", "val", "test"}
    # the majority rate over the test split's scored positions (every token 1..7 about
    # equally often), and what the summary says it counts
    test = echo_arrays(70, 32, tasks.SPLITS.index("test"))["labels"]
    scored = test[test != IGNORE]
    assert summary["majority_rate"] == pytest.approx(np.bincount(scored).max() / scored.size)
    assert summary["accuracy_over"] == "scored positions"
    # learnt: each scored token is read back
    assert summary["test_accuracy"] > 0.95, summary
    assert summary["test_sequence_accuracy"] > 0.5, summary
