"""Which runs count, and the mean ± standard error over their seeds: one rule each, read by
the tables (:mod:`ablations.table`), the plots (:mod:`ablations.plots`) and the state-norm
table (:mod:`ablations.state_norms`).

* A run *finished* when its status is ``"finished"`` and it has a test accuracy
  (:func:`is_finished`); a failed, preempted or summary-less run is counted, never averaged
  in as zero.
* Each seed of a setting counts once (:func:`one_run_per_seed`): when the same seed ran
  more than once (a job rerun into another folder), a finished run supersedes the others,
  and two finished runs of one seed are an error naming their folders, since nothing could
  tell which to use.
* Over a setting's finished seeds: the mean test accuracy in percent and its standard error
  ``std(ddof=1) / sqrt(n)`` (:func:`standard_error`), which one seed does not have: NaN,
  shown blank, never 0 (:func:`seed_stats`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

#: The status :func:`lru.training.loop.train` writes for a run that ran to its end.
FINISHED = "finished"
#: What one table cell or bar summarises: the runs of one task and label.
SETTING = ("task", "label")
#: Columns of a runs frame (:func:`ablations.runs.load_runs`) that these rules read.
RUN_COLUMNS = ("task", "label", "seed", "status", "test_accuracy", "run_dir")


def is_finished(runs: pd.DataFrame) -> pd.Series:
    """Per run: whether it finished with a test accuracy (status ``"finished"``)."""
    return (runs["status"] == FINISHED) & runs["test_accuracy"].notna()


def one_run_per_seed(runs: pd.DataFrame, by: Sequence[str] = SETTING) -> pd.DataFrame:
    """Each seed of each setting once, with a ``finished`` column (:func:`is_finished`).

    Of the runs of one setting and seed, the finished one is kept; where none finished, the
    first by folder (its status says why it did not finish).

    Args:
      runs: a runs frame with :data:`RUN_COLUMNS` (and ``by``).
      by: the columns that make a setting: :data:`SETTING`, plus e.g. ``r_min`` and
        ``r_max`` for a sweep over the ring.

    Returns:
      The kept runs, in their order in ``runs``.

    Raises:
      ValueError: one seed of a setting finished twice; the message names the folders.
    """
    runs = runs.assign(finished=is_finished(runs))
    key = [*by, "seed"]
    done = runs[runs["finished"]]
    twice = done[done.duplicated(key, keep=False)]
    if len(twice):
        values, group = next(iter(twice.groupby(key, dropna=False, sort=False)))
        named = dict(zip(key, values))
        setting = " / ".join(str(named[c]) for c in by if c in SETTING)
        setting += "".join(f", {c} {named[c]}" for c in by if c not in SETTING)
        raise ValueError(
            f"{setting} seed {named['seed']} finished more than once "
            f"({', '.join(group['run_dir'])}); tables and plots hold one run per seed: point "
            f"them at one sweep folder, or move the extra runs out (runs that differ in other "
            f"settings belong in separate tables)")
    ordered = runs.sort_values(["finished", "run_dir"], ascending=[False, True], kind="stable")
    return ordered.drop_duplicates(key, keep="first").sort_index()


def finished_runs(runs: pd.DataFrame, by: Sequence[str] = SETTING) -> pd.DataFrame:
    """The finished seeds of :func:`one_run_per_seed`, with ``accuracy``: the test accuracy
    in percent."""
    seeds = one_run_per_seed(runs, by)
    finished = seeds[seeds["finished"]]
    return finished.assign(accuracy=finished["test_accuracy"].astype(float) * 100.0)


def standard_error(values) -> float:
    """The standard error of a mean, ``std(ddof=1) / sqrt(n)``; NaN for fewer than two
    values (one seed has none: it is shown blank, never as 0)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan")
    return float(values.std(ddof=1) / np.sqrt(len(values)))


def seed_stats(runs: pd.DataFrame, by: Sequence[str] = SETTING) -> pd.DataFrame:
    """Per setting of ``runs``: the test accuracy over its finished seeds.

    Args:
      runs: a runs frame with :data:`RUN_COLUMNS` (and ``by``).
      by: the columns that make a setting (:func:`one_run_per_seed`).

    Returns:
      One row per setting with a run, indexed by ``by``: ``mean`` and ``sem``
      (:func:`standard_error`) in percent, NaN without a finished seed (``sem`` also with
      one); ``seeds``, the seeds run; ``finished``, those that finished.

    Raises:
      ValueError: one seed of a setting finished twice (:func:`one_run_per_seed`).
    """
    by = list(by)
    seeds = one_run_per_seed(runs, by)
    accuracy = finished_runs(seeds, by).groupby(by)["accuracy"]
    counts = seeds.groupby(by)["finished"]
    return pd.DataFrame({"mean": accuracy.mean(), "sem": accuracy.agg(standard_error),
                         "seeds": counts.size(), "finished": counts.sum()})
