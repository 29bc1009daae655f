"""The suite's tiny training job: generated ListOps small enough to train in seconds.

One definition for every test that trains through ``lru.training.loop`` or ``python -m
lru.train`` on it. Trees of depth at most 2 and at most 16 tokens: every batch pads to
the shortest length bucket (:func:`lru.training.batching.bucket_length`), so a run
compiles one training and one evaluation program, and 200 steps of a 2-layer, 16-wide
LRU, S4, S4D, S5, Hawk or Griffin reach well above the majority-class rate (measured: test
accuracy 0.39-0.48 over two seeds, majority 0.19).
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir

from lru.training.config import register

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def tiny_overrides(data_dir: Path, run_dir: Path, steps: int = 40) -> list[str]:
    """Overrides of ``conf/config.yaml`` for the tiny job in ``run_dir`` on ``data_dir``."""
    return [
        f"run_dir={run_dir}",
        f"task.data_dir={data_dir}",
        f"task.cache_dir={data_dir / 'cache'}",
        "task.generate.args.n_train=1200", "task.generate.args.n_val=200",
        "task.generate.args.n_test=200", "task.generate.args.max_depth=2",
        "task.generate.args.max_length=16", "task.options.max_length=16",
        "model.d_model=16", "model.d_state=16", "model.n_layers=2",
        f"trainer.steps={steps}", "trainer.eval_every=20", "trainer.log_every=10",
        "trainer.eval_batch_size=100", "trainer.progress=false",
    ]


def compose_cfg(overrides: list[str]):
    """``conf/config.yaml`` composed with ``overrides`` (Hydra's compose API)."""
    register()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)
