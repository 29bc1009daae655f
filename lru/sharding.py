"""Data parallelism: the batch is split over every device along a 1-D ``"data"`` mesh.

The training state stays replicated; XLA partitions the jitted step from the batch's
sharding (GSPMD), so BatchNorm statistics and the loss are still taken over the whole batch
and the result equals the single-device step. Multi-host runs call
:func:`initialize_distributed` first (``jax.distributed.initialize`` reads the cluster from
the environment, e.g. SLURM's).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def initialize_distributed() -> None:
    """Join a multi-process run (no-op when there is a single process to run)."""
    jax.distributed.initialize()


def data_sharding() -> NamedSharding:
    """Batch-axis sharding over all devices (one device: an ordinary placement)."""
    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    return NamedSharding(mesh, PartitionSpec("data"))


def check_divisible(batch_size: int, key: str) -> None:
    n = jax.device_count()
    if batch_size % n:
        raise ValueError(f"{key}={batch_size} must be divisible by the {n} devices the batch "
                         f"is sharded over")


def shard_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Place a global batch on the devices, split along axis 0.

    Every process computes the same global batch (batches are a pure function of the
    step); each contributes its contiguous slice of it.
    """
    count, index = jax.process_count(), jax.process_index()

    def local(x):
        per = x.shape[0] // count
        return x[index * per:(index + 1) * per]

    return {k: jax.make_array_from_process_local_data(sharding, local(v), v.shape)
            for k, v in batch.items()}
