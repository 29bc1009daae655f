"""Named optimizer groups (``lru.training.optim.ParamGroup``, ``optimizer.groups``).

The updates are checked against AdamW written out here in numpy (moments, bias
correction, decoupled weight decay, the warmup-cosine schedule by its formula), step by
step on a tiny S5 classifier, for parameters in the default groups and in named groups.
The experiment files' groups are checked to reach the optimizer as written. Seeds are fixed
and shapes tiny.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hydra import compose, initialize_config_dir

from lru.training.config import register
from lru.layers import S4, S5
from lru.training.loop import optimizer_settings
from lru.training.registry import build_model
from lru.models import Classifier
from lru.training.optim import BASE, RECURRENT, OptimizerSettings, ParamGroup, make_optimizer, param_labels
from tasks.base import TaskMeta

CONF = str(Path(__file__).resolve().parents[1] / "conf")
register()

LR, WD, RECURRENT_FACTOR = 0.05, 0.2, 0.25
B1, B2, EPS = 0.9, 0.999, 1e-8


def s5_classifier(n_layers: int = 1) -> Classifier:
    return Classifier(4, n_layers, 3, functools.partial(S5, 4, 4), vocab_size=6,
                      rngs=nnx.Rngs(0))


def flat_labels(model, groups=()) -> dict[tuple, str]:
    return {tuple(str(k) for k in path): label
            for path, label in nnx.to_flat_state(param_labels(model, groups))}


def leaf(path: tuple) -> str:
    return path[-1]


# --------------------------------------------------------------------------- labels


def test_default_labels_are_the_layers_recurrent_params():
    labels = flat_labels(s5_classifier())
    assert {leaf(p) for p, g in labels.items() if g == RECURRENT} == set(S5.RECURRENT_PARAMS)
    assert {leaf(p) for p, g in labels.items() if g == BASE} >= {"C", "D", "kernel", "embedding"}


def test_groups_take_their_parameters_and_leave_the_rest():
    model = s5_classifier(n_layers=2)
    groups = (ParamGroup("fast_B", ("B",)), ParamGroup("first_C", ("blocks.0.mixer.C",)))
    labels, default = flat_labels(model, groups), flat_labels(model)
    for path, label in labels.items():
        if leaf(path) == "B":
            assert label == "fast_B"
        elif path[-4:] == ("blocks", "0", "mixer", "C"):
            assert label == "first_C"
        else:  # everything else, including layer 1's C, keeps its default group
            assert label == default[path], path
    assert sum(label == "first_C" for label in labels.values()) == 1


# --------------------------------------------------------------------------- updates


def schedule_by_formula(step: int, warmup: int, steps: int) -> float:
    """Linear warmup from 0 to LR over ``warmup`` steps, then a half cosine to 0 at ``steps``."""
    if step < warmup:
        return LR * step / warmup
    return LR * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (steps - warmup)))


def adamw_by_hand(p, grads, lrs, wd):
    """``p`` after AdamW steps with ``grads[i]`` at learning rate ``lrs[i]`` (float64)."""
    p, m, v = np.array(p, np.float64), 0.0, 0.0
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        m = B1 * m + (1 - B1) * g
        v = B2 * v + (1 - B2) * g * g
        direction = (m / (1 - B1 ** t)) / (np.sqrt(v / (1 - B2 ** t)) + EPS)
        p = p - lr * (direction + wd * p)
    return p


def test_each_group_steps_with_its_lr_factor_and_weight_decay():
    model = s5_classifier()
    groups = (ParamGroup("B_fast", ("B",), lr_factor=1.0),  # weight decay: the optimizer's
              ParamGroup("dt", ("log_step",), lr_factor=0.5, weight_decay=0.0),
              ParamGroup("readout", ("mixer.C", "mixer.D"), lr_factor=2.0, weight_decay=0.7))
    expected = {"B": (1.0, WD), "log_step": (0.5, 0.0), "C": (2.0, 0.7), "D": (2.0, 0.7),
                "Lambda_re": (RECURRENT_FACTOR, 0.0), "Lambda_im": (RECURRENT_FACTOR, 0.0)}
    warmup, steps, n_steps = 1, 5, 4
    s = OptimizerSettings(lr=LR, weight_decay=WD, recurrent_lr_factor=RECURRENT_FACTOR,
                          steps=steps, warmup_steps=warmup, schedule="cosine", groups=groups)
    tx, _ = make_optimizer(model, s)
    params = nnx.state(model, nnx.Param)
    start = {tuple(map(str, k)): np.asarray(v[...]) for k, v in nnx.to_flat_state(params)}
    rng = np.random.default_rng(0)
    grads = [{k: rng.normal(size=v.shape) for k, v in start.items()} for _ in range(n_steps)]

    opt_state = tx.init(params)
    for g in grads:
        g_state = jax.tree.map(lambda x: x, params)
        for path, var in nnx.to_flat_state(g_state):
            var[...] = jnp.asarray(g[tuple(map(str, path))], jnp.float32)
        updates, opt_state = tx.update(g_state, opt_state, params)
        params = optax.apply_updates(params, updates)

    base_lrs = [schedule_by_formula(t, warmup, steps) for t in range(n_steps)]
    got = {tuple(map(str, k)): np.asarray(v[...]) for k, v in nnx.to_flat_state(params)}
    for path, p0 in start.items():
        factor, wd = expected.get(leaf(path), (1.0, WD))
        want = adamw_by_hand(p0, [g[path] for g in grads], [lr * factor for lr in base_lrs], wd)
        np.testing.assert_allclose(got[path], want, rtol=2e-5, atol=2e-6, err_msg=str(path))


def test_no_groups_keeps_the_two_default_groups():
    model = s5_classifier()
    s = OptimizerSettings(lr=LR, weight_decay=WD, recurrent_lr_factor=RECURRENT_FACTOR,
                          steps=10, schedule="constant")
    tx, _ = make_optimizer(model, s)
    assert set(tx.init(nnx.state(model, nnx.Param)).inner_states) == {RECURRENT, BASE}


# --------------------------------------------------------------------------- errors


def test_unknown_parameter_names_the_group_the_name_and_the_models_parameters():
    with pytest.raises(ValueError) as e:
        param_labels(s5_classifier(), (ParamGroup("dt", ("log_dt",)),))
    message = str(e.value)
    assert "optimizer.groups.dt" in message and "'log_dt'" in message
    for name in ("log_step", "Lambda_re", "B", "C", "kernel"):
        assert f"'{name}'" in message


def test_overlapping_groups_are_an_error_naming_both():
    groups = (ParamGroup("one", ("B",)), ParamGroup("two", ("mixer.B",)))
    with pytest.raises(ValueError, match="both 'one' and 'two'"):
        param_labels(s5_classifier(), groups)


@pytest.mark.parametrize("kwargs, match", [
    (dict(name=RECURRENT, params=("B",)), "reserved"),
    (dict(name=BASE, params=("B",)), "reserved"),
    (dict(name="g", params=()), "non-empty list"),
    (dict(name="g", params="B"), "non-empty list"),
    (dict(name="g", params=("mixer..B",)), "not a parameter name"),
    (dict(name="g", params=("B",), lr_factor=-1.0), "lr_factor must be >= 0"),
    (dict(name="g", params=("B",), weight_decay=-0.1), "weight_decay must be >= 0"),
])
def test_bad_groups_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ParamGroup(**kwargs)


# --------------------------------------------------------------------------- configs


def compose_cfg(overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def tiny_labels(experiment: str) -> dict[tuple, str]:
    cfg = compose_cfg([f"+experiment={experiment}", "model.d_model=4", "model.d_state=4",
                       "model.n_layers=1", "model.layer_options.blocks=1"]
                      if experiment.startswith("s5/") else
                      [f"+experiment={experiment}", "model.d_model=4", "model.d_state=4",
                       "model.n_layers=1"])
    meta = TaskMeta(name=cfg.task.name, n_classes=2, max_length=8, vocab_size=6)
    settings = optimizer_settings(cfg)
    return flat_labels(build_model(cfg, meta), settings.groups)


@pytest.mark.parametrize("experiment, moved", [
    ("s5/listops", {"B": "B_fast"}),             # --opt_config=BfastandCdecay
    ("s5/pathx", {"B": "B_decay"}),              # --opt_config=BandCdecay
    ("s5/text", {"log_step": "log_step_global"}),  # --dt_global=True
    ("s5/pathfinder", {}),                       # --opt_config=standard
    ("s4/listops", {"log_dt": "dt"}),            # layer.lr.dt: null
    ("s4/pathx", {}),                            # layer.lr: 0.0005 for dt, A and B
    ("s4d/image", {"log_dt": "dt"}),
])
def test_experiment_groups_reach_the_optimizer(experiment, moved):
    layer = {"s5": S5, "s4": S4}.get(experiment.split("/")[0])
    labels = tiny_labels(experiment)
    for path, label in labels.items():
        if leaf(path) in moved:
            assert label == moved[leaf(path)], path
        elif layer is not None and leaf(path) in layer.RECURRENT_PARAMS:
            assert label == RECURRENT, path


def test_group_from_the_command_line_and_a_misspelt_key():
    cfg = compose_cfg(["model=s5", "+optimizer.groups={dt: {params: [log_step], lr_factor: 2}}"])
    assert optimizer_settings(cfg).groups == (ParamGroup("dt", ("log_step",), 2.0, None),)
    with pytest.raises(Exception, match="lr_facter"):
        compose_cfg(["model=s5", "+optimizer.groups={dt: {params: [B], lr_facter: 2}}"])


def test_experiment_group_values_reach_the_settings():
    cfg = compose_cfg(["+experiment=s5/pathx"])
    (group,) = optimizer_settings(cfg).groups
    assert (group.name, group.params, group.weight_decay) == ("B_decay", ("B",), None)
    assert group.lr_factor == pytest.approx(1 / 3)
    cfg = compose_cfg(["+experiment=s4/text"])
    assert optimizer_settings(cfg).groups == (ParamGroup("dt", ("log_dt",), 1.0, 0.0),)
