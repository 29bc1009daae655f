"""Data parallelism: the batch is split over every device along a 1-D ``"data"`` mesh.

The training state stays replicated; XLA partitions the jitted step from the batch's
sharding (GSPMD), so BatchNorm statistics and the loss are still taken over the whole batch
and the result equals the single-device step. Multi-process (multi-host) runs call
:func:`initialize_distributed` first; every process then builds the same global batch and
places its own slice of it, and process 0 alone writes the run's files (:func:`is_writer`).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None, cluster: bool = False) -> bool:
    """Join a multi-process run, or stay a single process.

    Args:
      coordinator_address: ``host:port`` of process 0's coordinator service.
      num_processes: how many processes take part.
      process_id: this process's index, ``0 .. num_processes - 1``.
      cluster: with the three above unset, let ``jax.distributed.initialize`` read them
        from the cluster's environment (SLURM, Open MPI, Kubernetes, Cloud TPU).

    Returns:
      Whether a multi-process run was joined (False: nothing set, a single process).

    Raises:
      ValueError: some of the three are set and not all (naming the missing keys).

    On CPUs the processes exchange their collectives over gloo.
    """
    explicit = {"distributed.coordinator_address": coordinator_address,
                "distributed.num_processes": num_processes, "distributed.process_id": process_id}
    given = {k for k, v in explicit.items() if v is not None}
    if not given and not cluster:
        return False
    if given and given != set(explicit):
        missing = sorted(set(explicit) - given)
        raise ValueError(f"a multi-process run needs all of {sorted(explicit)}; {missing} "
                         f"unset (or set none of them and distributed.cluster=true on a "
                         f"cluster jax detects, such as SLURM)")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    return True


def is_writer() -> bool:
    """Whether this process writes the run's files (process 0; any single process)."""
    return jax.process_index() == 0


def sync_processes(name: str) -> None:
    """Wait until every process of a multi-process run reaches this point (else no-op)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def data_sharding() -> NamedSharding:
    """Batch-axis sharding over all devices (one device: an ordinary placement)."""
    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    return NamedSharding(mesh, PartitionSpec("data"))


def replicate(tree, sharding: NamedSharding):
    """``tree``'s arrays as global arrays held whole by every device of ``sharding``'s mesh.

    Every array the step takes lives on the mesh from its first call: the step's outputs
    do (the batch is sharded over it), so an initial state placed elsewhere (an ordinary
    single-device array) would make the second step compile the program again. With
    several processes, where a jitted step takes only global arrays, each process holds
    identical values (the same seed built them).
    """
    whole = NamedSharding(sharding.mesh, PartitionSpec())
    if jax.process_count() == 1:
        return jax.device_put(tree, whole)

    def place(x):
        copies = [jax.device_put(x, d) for d in whole.addressable_devices]
        return jax.make_array_from_single_device_arrays(x.shape, whole, copies)

    return jax.tree.map(place, tree)


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
