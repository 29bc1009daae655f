"""The ablation suite (issue 6): the LRU's ladder as sweeps, tables against the papers, plots.

* :mod:`ablations.ladder`: every rung and the S4D/S5 baselines over seeds as Hydra
  multiruns of ``python -m lru.train``, the ring of each task on the ring rungs only.
* :mod:`ablations.runs`: ``load_runs(runs_dir)``, every run's ``summary.json`` and config
  values as one pandas frame, each run labelled by ``run_label``.
* :mod:`ablations.stats`: which runs count (finished, one per seed) and their mean ±
  standard error, the rules the tables, the plots and the state norms share.
* :mod:`ablations.table`: the LRA table and the ladder table (mean ± standard error over
  seeds, failed and missing runs flagged) beside the papers' numbers, as markdown, LaTeX or
  CSV.
* :mod:`ablations.reference`: the papers' numbers and ``paper_cells``, their match to our
  rows; :mod:`ablations.plots`: the figures.

Command line: ``python -m ablations {run,table,plot} --help``.
"""
