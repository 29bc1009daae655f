"""The training app: ``python -m lru.train [overrides]`` (or ``lra-train``).

With no arguments it trains the LRU on a generated ListOps set on the CPU (``conf/``'s
defaults). Overrides follow Hydra, e.g.::

    python -m lru.train task=listops task.data_dir=~/lra_release trainer=default
    python -m lru.train -m seed=0,1,2 ablation=ring,lru

The app only wires Hydra to :func:`lru.training.loop.train`, which does the work.
"""

from __future__ import annotations

import logging
import signal
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lru.training.config import register

register()


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from lru.kernels.cpu_allocator import tune_cpu_allocator
    from lru.training.loop import train
    from lru.training.sharding import initialize_distributed

    tune_cpu_allocator()
    # Hydra logs at INFO; JAX's backend probe ("Unable to initialize backend 'tpu'") is noise.
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    d = cfg.distributed
    initialize_distributed(d.coordinator_address, d.num_processes, d.process_id, d.cluster)
    # This job's command line (or sweep) overrides: recorded, and unused keys fail the run.
    summary = train(cfg, overrides=list(HydraConfig.get().overrides.task))
    if summary["status"] == "finished":
        name = summary["model"] + (f" ({summary['rung']})" if summary["rung"] else "")
        sequences = ("" if "test_sequence_accuracy" not in summary else
                     f", test sequence accuracy {summary['test_sequence_accuracy']:.4f}")
        print(f"{summary['task']} / {name}: best val accuracy "
              f"{summary['best_val_accuracy']:.4f}, test accuracy {summary['test_accuracy']:.4f}"
              f"{sequences} (majority-class rate {summary['majority_rate']:.4f}); run files in "
              f"{summary['run_dir']}")
    elif summary["status"] in ("failed", "locked") and HydraConfig.get().mode == RunMode.RUN:
        sys.exit(1)  # a single run fails loudly; in a sweep the other jobs carry on
    if "signal" in summary and HydraConfig.get().mode == RunMode.MULTIRUN:
        stop_sweep(summary)
    return summary.get("best_val_accuracy")


def stop_sweep(summary: dict) -> None:
    """End the whole sweep after a job that received SIGTERM or SIGINT (preempted, or done
    as the signal came): Hydra's launcher would otherwise start the next job. Exits with
    128 + the signal's number, as a process killed by it would."""
    print(f"sweep stopped by {summary['signal']} during the job in {summary['run_dir']} "
          f"(status {summary['status']}); the jobs after it were not started. Run the same "
          f"command again to resume: finished jobs are skipped.", flush=True)
    sys.exit(128 + signal.Signals[summary["signal"]])


if __name__ == "__main__":
    main()
