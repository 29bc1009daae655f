"""Structured-config schemas for the Hydra app (``conf/``), and their value checks.

Each config group has a dataclass schema registered in Hydra's ConfigStore as
``<group>/schema``; every YAML file in ``conf/<group>/`` starts from it (``defaults:
[schema]``), so an unknown key or a wrongly typed value is an error that names the key.
Values with a closed set of choices are checked by :func:`validate`, whose messages name the
key and the allowed values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

import tasks
from lru.blocks import GLU_VARIANTS, NORMS
from lru.choices import check_choice
from lru.ladder import RUNG_NAMES
from lru.models import POOLINGS
from lru.precision import PRECISIONS
from lru.scan import SCAN_METHODS


@dataclasses.dataclass
class GenerateConfig:
    """How to generate the task's data when ``data_dir`` lacks it (offline mini tasks)."""

    generator: str = "listops"  # tasks.generate.<generator>.generate
    args: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TaskConfig:
    name: str = MISSING  # one of tasks.TASK_NAMES
    data_dir: str = "data/lra_release"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # tasks.load options
    generate: Optional[GenerateConfig] = None
    cache_dir: Optional[str] = None  # default: $LRU_DATA_CACHE or ~/.cache/lru-harness


@dataclasses.dataclass
class ModelConfig:
    layer: str = "lru"  # one of LAYERS (lru.training.loop)
    d_model: int = 128  # H
    d_state: int = 256  # N
    n_layers: int = 4
    # The LRU's ring (rungs from 'ring' on); other layers take theirs in layer_options.
    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 6.28
    bidirectional: bool = False
    # Keyword arguments of a non-LRU layer's constructor (e.g. S5's blocks, dt_min).
    layer_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    norm: str = "batch"
    # BatchNorm's running averages: running = bn_momentum * running + (1 - bn_momentum) * batch.
    bn_momentum: float = 0.9
    prenorm: bool = True
    glu: str = "full_glu"
    dropout: float = 0.0
    pooling: str = "mean"
    scan_method: str = "auto"


@dataclasses.dataclass
class AblationConfig:
    rung: str = "lru"  # one of lru.ladder.RUNG_NAMES


@dataclasses.dataclass
class ParamGroupConfig:
    """Parameters with their own learning rate and weight decay (``lru.training.optim.ParamGroup``)."""

    # Leaf names ("B") or dotted path suffixes ("mixer.B") of the parameters in the group.
    params: list[str] = MISSING
    lr_factor: float = 1.0  # the group trains at optimizer.lr * lr_factor
    weight_decay: Optional[float] = None  # null: optimizer.weight_decay; 0: plain Adam


@dataclasses.dataclass
class OptimizerConfig:
    lr: float = 1e-3
    weight_decay: float = 0.05
    recurrent_lr_factor: float = 0.5  # nu, theta, gamma, B: lr * factor, no weight decay
    b1: float = 0.9
    b2: float = 0.999
    grad_clip: float = 0.0  # global-norm clipping; 0 = off
    # Named groups that take the parameters they name out of the default 'recurrent' and
    # 'base' groups (lru/training/optim.py); e.g. {B: {params: [B], lr_factor: 1.0}}.
    groups: dict[str, ParamGroupConfig] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ScheduleConfig:
    name: str = "cosine"  # cosine | constant
    warmup_fraction: float = 0.1
    end_lr_ratio: float = 0.0


@dataclasses.dataclass
class TrainerConfig:
    steps: int = 1000
    batch_size: int = 32
    eval_batch_size: int = 256
    eval_every: int = 500
    log_every: int = 50
    bucket: bool = True  # batch by length
    progress: bool = True
    checkpoint: bool = True
    resume: bool = True  # continue from the run directory's latest checkpoint if present
    tensorboard: bool = False  # also log metrics to run_dir/tensorboard (tensorboardX)
    # "fp32", or "bf16": bfloat16 matmuls with float32 accumulation (lru/precision.py)
    precision: str = "fp32"
    # Memory for compute: LRU/S5 layers keep only their inputs for the backward pass and
    # recompute their states there (lru/layers/planar.py); same gradients; Path-X: 40% less
    # memory for 17% more time (docs/performance.md).
    recompute_states: bool = False


@dataclasses.dataclass
class DistributedConfig:
    """A multi-process (multi-host) run: ``jax.distributed.initialize``'s arguments.

    All three unset (and ``cluster`` false): a single process. The environment variables
    ``LRU_COORDINATOR_ADDRESS``, ``LRU_NUM_PROCESSES`` and ``LRU_PROCESS_ID`` fill them.
    """

    coordinator_address: Optional[str] = "${oc.env:LRU_COORDINATOR_ADDRESS,null}"  # host:port of process 0
    num_processes: Optional[int] = "${oc.decode:${oc.env:LRU_NUM_PROCESSES,null}}"
    process_id: Optional[int] = "${oc.decode:${oc.env:LRU_PROCESS_ID,null}}"  # 0 .. num_processes - 1
    cluster: bool = False  # read the three from the cluster (SLURM, ...) as jax does


@dataclasses.dataclass
class Config:
    task: TaskConfig = MISSING
    model: ModelConfig = MISSING
    ablation: AblationConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    schedule: ScheduleConfig = MISSING
    trainer: TrainerConfig = MISSING
    distributed: DistributedConfig = dataclasses.field(default_factory=DistributedConfig)
    seed: int = 0
    run_dir: str = "results/runs/default"


CHOICES = {
    "model.norm": NORMS,
    "model.glu": GLU_VARIANTS,
    "model.pooling": POOLINGS,
    # "native": the compiled CPU kernels (lru/kernels/native.py) of the LRU's and S5's recurrence
    # and the RG-LRU's real one; a case they do not run is refused with its own message
    "model.scan_method": SCAN_METHODS,
    "ablation.rung": RUNG_NAMES,
    "schedule.name": ("cosine", "constant"),
    "trainer.precision": PRECISIONS,
}


def register() -> None:
    """Register every schema in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="schema", node=Config)
    for group, node in [("task", TaskConfig), ("model", ModelConfig),
                        ("ablation", AblationConfig), ("optimizer", OptimizerConfig),
                        ("schedule", ScheduleConfig), ("trainer", TrainerConfig)]:
        cs.store(group=group, name="schema", node=node)


#: Keys the schema no longer has: old key -> the key that now holds its value.
#: ``trainer.distributed`` (a flag calling ``jax.distributed.initialize()``) became
#: ``distributed.cluster``.
RETIRED = {"trainer.distributed": "distributed.cluster"}


def upgrade(written: DictConfig) -> DictConfig:
    """A config written by an older version (a run folder's ``config.yaml``) on today's schema.

    Retired keys (:data:`RETIRED`) move to their successors; keys added since take their
    defaults. The result compares equal to a config composed today for the same run.
    """
    written = OmegaConf.create(OmegaConf.to_container(written))
    for old, new in RETIRED.items():
        parent, _, leaf = old.rpartition(".")
        node = OmegaConf.select(written, parent)
        if node is not None and leaf in node:
            value = node.pop(leaf)
            OmegaConf.update(written, new, value, force_add=True)
    return OmegaConf.merge(OmegaConf.structured(Config), written)


def validate(cfg: DictConfig, layers: Collection[str]) -> None:
    """Check the values with closed sets of choices (:data:`CHOICES`, ``model.layer`` among
    ``layers``, the registry's names, and ``task.name``) and the numeric ranges; a
    ValueError names the key and the valid values (:func:`lru.choices.check_choice`)."""
    choices = {**CHOICES, "model.layer": tuple(layers), "task.name": tasks.TASK_NAMES}
    for key, allowed in choices.items():
        check_choice(key, OmegaConf.select(cfg, key), allowed)
    positive = ["trainer.steps", "trainer.batch_size", "trainer.eval_batch_size",
                "trainer.eval_every", "trainer.log_every", "model.d_model", "model.d_state",
                "model.n_layers"]
    for key in positive:
        if OmegaConf.select(cfg, key) <= 0:
            raise ValueError(f"{key} must be positive; got {OmegaConf.select(cfg, key)}")
    if not 0.0 <= cfg.model.dropout < 1.0:
        raise ValueError(f"model.dropout must be in [0, 1); got {cfg.model.dropout}")
    if not 0.0 <= cfg.model.bn_momentum <= 1.0:
        raise ValueError(f"model.bn_momentum must be in [0, 1]; got {cfg.model.bn_momentum}")
