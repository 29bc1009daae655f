"""The LRA table and the ladder table from :func:`ablations.runs.load_runs`' frame.

Each cell is the test accuracy (percent) of one model or rung on one task: the mean over
seeds, its standard error and the number of seeds, by the rules of :mod:`ablations.stats`
(the plots follow the same ones). Only finished runs count: a failed, preempted or
summary-less run is counted and flagged beside the number (``n=2/3; 1 failed``), never
averaged in as zero, and a cell with no finished run shows ``—``; one seed has no standard
error. When the same seed ran more than once, a finished run supersedes the others; two
finished runs of one seed are an error.

The papers' numbers (a frame with columns ``model, task, value, source``, value in percent,
as :func:`ablations.reference.paper_numbers` gives) go beside ours, matched to the rows by
:func:`ablations.reference.paper_cells`, with the difference ``ours - paper`` in points.

The ladder layout also says, per task, whether each row differs from the row it is compared
with: a rung from the nearest rung above it that ran on that task (the ladder's previous
step; a sweep of some rungs, such as ``--rungs rnn_tanh,diag_complex,lru``, compares the
steps it made), a baseline from ``lru``; a row that did not run is compared with nothing.
The test is Welch's two-sided t-test over the finished seeds' accuracies (unequal variances;
:func:`significance`); a cell is marked when p < :data:`ALPHA`.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from ablations.reference import paper_cells
from ablations.runs import MISSING_SUMMARY
from ablations.stats import FINISHED, SETTING, finished_runs, one_run_per_seed, seed_stats
from lru.ladder import RUNG_NAMES

#: The Long Range Arena's six tasks, in the papers' column order.
LRA_TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")
AVERAGE = "average"
LAYOUTS = ("lra", "ladder")
FORMATS = ("markdown", "latex", "csv")

TASK_TITLES = {"listops": "ListOps", "text": "Text", "retrieval": "Retrieval", "image": "Image",
               "pathfinder": "Pathfinder", "pathx": "Path-X", "path256": "Path-256",
               AVERAGE: "Avg"}
MISSING = "—"
#: A paper's cell that exists but holds no number (the paper printed a failure mark).
NO_NUMBER = "n/a"
#: Statuses of runs that did not finish; each has a count column even when zero.
UNFINISHED = ("failed", "preempted", MISSING_SUMMARY)
#: Significance level of the ladder layout's comparisons, and the marker of a p below it.
ALPHA = 0.05
SIGNIFICANT = "*"
#: The row every baseline of the ladder layout is compared with.
BASELINE_REFERENCE = "lru"


@dataclasses.dataclass(frozen=True)
class Table:
    """A table before formatting.

    Attributes:
      layout: ``"lra"`` or ``"ladder"``.
      rows: row labels in order (rung names, model names).
      columns: tasks in order (``"average"`` last in the LRA layout).
      cells: one row per (label, task) of ``rows x columns``: ``mean``, ``sem`` (percent;
        NaN without a finished run, ``sem`` NaN with fewer than two), ``seeds`` (seeds run),
        ``finished``, one count column per status in ``statuses``, when papers are given
        ``paper``, ``difference`` and ``source``, and in the ladder layout ``compared_with``
        (the row this cell is tested against, by :func:`compared_with`; missing for none),
        ``p_value`` (Welch's t-test; NaN where it is undefined) and ``significant``
        (p < :data:`ALPHA`).
      statuses: the statuses of the runs that did not finish (at least :data:`UNFINISHED`),
        each a column of ``cells``.
      with_paper: whether paper columns were asked for.
    """

    layout: str
    rows: list[str]
    columns: list[str]
    cells: pd.DataFrame
    statuses: list[str]
    with_paper: bool


def build_table(runs: pd.DataFrame, layout: str, reference: pd.DataFrame | None = None) -> Table:
    """The ``layout`` table (``"lra"`` or ``"ladder"``) of ``runs``; see the module docstring.

    Args:
      runs: :func:`ablations.runs.load_runs`' frame.
      layout: ``"lra"``: the models present (baselines, then rungs) x the six LRA tasks +
        their average (given only where all six have a finished seed; the paper's is the
        reference's ``average`` row, else the mean of its six values); ``"ladder"``: every
        rung of :data:`lru.ladder.RUNG_NAMES` (absent ones show as missing), then the other
        models present x the tasks present.
      reference: the papers' numbers (columns ``model, task, value, source``), matched to
        the cells by :func:`ablations.reference.paper_cells`. None: no paper columns.

    Raises:
      ValueError: an unknown layout, a reference without its columns, or one seed of a
        task and label finished twice (the message names the folders).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} is not one of {LAYOUTS}")
    per_cell = cell_stats(runs)
    present = set(per_cell["label"])
    rungs = [r for r in RUNG_NAMES if layout == "ladder" or r in present]
    others = sorted(present - set(RUNG_NAMES))
    if layout == "lra":
        rows, columns = others + rungs, [*LRA_TASKS, AVERAGE]
    else:
        tasks = set(per_cell["task"])
        rows = rungs + others
        columns = [t for t in LRA_TASKS if t in tasks] + sorted(tasks - set(LRA_TASKS))
    grid = pd.MultiIndex.from_product([rows, columns], names=["label", "task"])
    cells = per_cell.set_index(["label", "task"]).reindex(grid)
    statuses = [c for c in cells.columns if c not in ("mean", "sem", "seeds", "finished")]
    counts = ["seeds", "finished", *statuses]
    cells[counts] = cells[counts].fillna(0).astype(int)
    if layout == "lra":
        cells = _fill_average(cells, rows)
    else:
        cells = _add_significance(cells, _finished_accuracies(runs))
    if reference is not None:
        cells = _add_paper(cells, reference, rows)
    return Table(layout, rows, columns, cells.reset_index(), statuses, reference is not None)


def cell_stats(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (task, label): :func:`ablations.stats.seed_stats` (``mean``, ``sem`` in percent,
    ``seeds``, ``finished``) and a count per status of the seeds that did not finish."""
    out = seed_stats(runs)
    seeds = one_run_per_seed(runs)
    unfinished = seeds[~seeds["finished"]]
    if len(unfinished):
        status = unfinished["status"].where(unfinished["status"] != FINISHED, "no test accuracy")
        out = out.join(pd.crosstab([unfinished["task"], unfinished["label"]], status))
    for status in UNFINISHED:
        if status not in out.columns:
            out[status] = 0
    return out.reset_index()


def significance(a, b) -> float:
    """Welch's two-sided t-test p-value of two groups of seeds' accuracies.

    ``t = (mean(a) - mean(b)) / sqrt(s_a^2 / n_a + s_b^2 / n_b)`` with the sample variances
    ``s^2`` (``ddof=1``) and Welch-Satterthwaite degrees of freedom; unlike Student's test it
    does not assume that two rungs vary alike over seeds.

    Args:
      a, b: ``(n_a,)``, ``(n_b,)`` accuracies, one per finished seed.

    Returns:
      The p-value, or NaN where the test is undefined: fewer than two seeds on a side, or
      no variance on either side (every seed of both rows scored the same).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2 or (np.var(a) == 0 and np.var(b) == 0):
        return float("nan")
    with warnings.catch_warnings():  # one side without variance (e.g. 100% on every seed)
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        return float(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)


def compared_with(label: str, ran: set[str]) -> str | None:
    """The row the ladder layout tests ``label`` against on one task, where ``ran`` holds
    the labels with a run on that task: a rung against the nearest rung before it in
    :data:`lru.ladder.RUNG_NAMES` that ran, any other model against
    :data:`BASELINE_REFERENCE`; None for a label that did not run, the first rung that ran
    and the reference itself."""
    if label not in ran:
        return None
    if label in RUNG_NAMES:
        above = [r for r in RUNG_NAMES[:RUNG_NAMES.index(label)] if r in ran]
        return above[-1] if above else None
    return None if label == BASELINE_REFERENCE else BASELINE_REFERENCE


def _finished_accuracies(runs: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """(label, task) -> the finished seeds' test accuracies in percent."""
    return {(label, task): group["accuracy"].to_numpy()
            for (task, label), group in finished_runs(runs).groupby(list(SETTING))}


def _add_significance(cells: pd.DataFrame,
                      accuracies: dict[tuple[str, str], np.ndarray]) -> pd.DataFrame:
    ran = {task: set(group.index.get_level_values("label")[group["seeds"] > 0])
           for task, group in cells.groupby(level="task")}
    cells["compared_with"] = [compared_with(label, ran[task]) for label, task in cells.index]
    empty = np.array([])
    cells["p_value"] = [
        significance(accuracies.get((label, task), empty), accuracies.get((other, task), empty))
        if other is not None else float("nan")
        for (label, task), other in zip(cells.index, cells["compared_with"])]
    cells["significant"] = cells["p_value"] < ALPHA
    return cells


def _fill_average(cells: pd.DataFrame, rows: list[str]) -> pd.DataFrame:
    """The average over the six tasks, only where all six have a finished seed."""
    for label in rows:
        per_task = cells.loc[label].loc[list(LRA_TASKS)]
        if per_task["mean"].notna().all():
            cells.loc[(label, AVERAGE), "mean"] = per_task["mean"].mean()
            cells.loc[(label, AVERAGE), "sem"] = np.sqrt((per_task["sem"] ** 2).sum(min_count=6)) / 6
    return cells


def _add_paper(cells: pd.DataFrame, reference: pd.DataFrame, rows: list[str]) -> pd.DataFrame:
    cells = cells.join(paper_cells(reference).rename(columns={"value": "paper"}))
    if AVERAGE in cells.index.get_level_values("task"):
        for label in rows:
            six = cells.loc[label].loc[list(LRA_TASKS), "paper"]
            if pd.isna(cells.loc[(label, AVERAGE), "paper"]) and six.notna().all():
                cells.loc[(label, AVERAGE), "paper"] = six.mean()
                cells.loc[(label, AVERAGE), "source"] = "mean of the six tasks' paper values"
    cells["difference"] = cells["mean"] - cells["paper"]
    return cells


# --------------------------------------------------------------------------- formatting


def format_table(table: Table, fmt: str) -> str:
    """``table`` as ``"markdown"``, ``"latex"`` or ``"csv"`` text.

    Markdown and LaTeX give one row per label and, per task, our cell (``mean ± se (n=...)``)
    and with papers the paper's value and the difference, then a note and the papers'
    sources. CSV gives the numbers: one line per (label, task) with every field of
    :attr:`Table.cells`.
    """
    if fmt == "csv":
        return table.cells.to_csv(index=False, float_format="%.4f")
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {FORMATS}")
    wide = _wide_text(table)
    note = ("Test accuracy (%): mean ± standard error over seeds; n = seeds finished / seeds "
            "run, with the runs that did not finish; — = no finished run."
            + (" paper: the published value (n/a: the paper prints no number); Δ = ours − "
               "paper (points)." if table.with_paper else "")
            + (f" p: Welch's two-sided t-test over seeds of the row against the nearest rung "
               f"above it that ran (a baseline: against {BASELINE_REFERENCE}); {SIGNIFICANT} = "
               f"p < {ALPHA:g}; — = "
               f"fewer than two finished seeds on a side, or no variance on either."
               if table.layout == "ladder" else ""))
    sources = _sources(table)
    if fmt == "markdown":
        lines = [note, "", wide.to_markdown(index=False, disable_numparse=True)]
        if sources:
            lines += ["", "Paper values: " + "; ".join(sources) + "."]
        return "\n".join(lines) + "\n"
    latex = wide.to_latex(index=False, escape=True, column_format="l" + "r" * (wide.shape[1] - 1))
    for symbol, command in (("±", r"$\pm$"), ("Δ", r"$\Delta$"), ("−", "$-$"), ("<", "$<$"),
                            (MISSING, "--")):
        latex, note = latex.replace(symbol, command), note.replace(symbol, command)
    comments = [f"% {note}"] + [f"% paper: {s}" for s in sources]
    return "\n".join(comments) + "\n" + latex


def _wide_text(table: Table) -> pd.DataFrame:
    cells = table.cells.set_index(["label", "task"])
    columns: dict[str, list[str]] = {("rung" if table.layout == "ladder" else "model"): table.rows}
    for task in table.columns:
        title = TASK_TITLES.get(task, task)
        here = cells.xs(task, level="task").loc[table.rows]
        columns[title] = [_cell_text(row, table.statuses, task == AVERAGE)
                          for _, row in here.iterrows()]
        if table.with_paper:
            columns[f"{title} paper"] = [
                NO_NUMBER if pd.isna(v) and pd.notna(source) else _number(v, "{:g}")
                for v, source in zip(here["paper"], here["source"])]
            columns[f"{title} Δ"] = [_number(v, "{:+.1f}") for v in here["difference"]]
        if table.layout == "ladder":
            columns[f"{title} p"] = [_p_text(p, pd.notna(other))
                                     for other, p in zip(here["compared_with"], here["p_value"])]
    return pd.DataFrame(columns)


def _p_text(p: float, compared: bool) -> str:
    """``0.021 *``, ``0.43``, ``<0.001 *``; ``—`` where undefined; empty for no comparison."""
    if not compared:
        return ""
    if pd.isna(p):
        return MISSING
    text = "<0.001" if p < 0.001 else f"{p:.3f}"
    return f"{text} {SIGNIFICANT}" if p < ALPHA else text


def _cell_text(cell: pd.Series, statuses: list[str], average: bool) -> str:
    value = MISSING if pd.isna(cell["mean"]) else f"{cell['mean']:.1f}"
    if not pd.isna(cell["sem"]):
        value += f" ± {cell['sem']:.1f}"
    if average:
        return value
    seeds, finished = int(cell["seeds"]), int(cell["finished"])
    if seeds == 0:
        return value
    others = [f"{int(cell[s])} {s}" for s in statuses if cell[s] > 0]
    count = f"n={finished}" if finished == seeds else f"n={finished}/{seeds}"
    return f"{value} ({'; '.join([count, *others])})"


def _number(value: float, spec: str) -> str:
    return MISSING if pd.isna(value) else spec.format(value)


def _sources(table: Table) -> list[str]:
    if not table.with_paper:
        return []
    return list(dict.fromkeys(table.cells["source"].dropna()))
