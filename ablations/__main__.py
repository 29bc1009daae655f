"""``python -m ablations {run,table,plot,state-norms,extrapolate}``: run the ladder, tabulate
runs, plot them, measure their hidden-state norms, evaluate per-token runs at other lengths."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ablations.table import FORMATS, LAYOUTS
from lru.ladder import RUNG_NAMES

MAIN_EXAMPLES = """\
examples:
  python -m ablations run ladder --task listops_mini --seeds 3
  python -m ablations table results/multirun/ladder/listops_mini/<time>
  python -m ablations plot --help
  python -m ablations extrapolate RUN_DIR --lengths 256,512,1024,2048,4096 --plot length.png
"""

RUN_EXAMPLES = """\
examples:
  python -m ablations run ladder --task listops_mini --seeds 3
  python -m ablations run ladder --help
"""

LADDER_EXAMPLES = """\
Every rung of the LRU paper's ladder (rnn_relu ... lru) and the baselines, each over the
seeds 0..N-1, as up to three `python -m lru.train -m` multiruns into subfolders of one
sweep folder: rungs_unit_disk/ (rungs without ring init: no ring values), rungs_ring/
(ring, lru: the task's ring from conf/experiment/lru/<task name>.yaml, or the
experiment's; listops_mini and pathfinder_mini use ListOps' and Pathfinder's ring) and
baselines/ (model=s4d,s5). A failed job is marked failed in its summary.json; the sweep
goes on. Overrides after -- go to every job (ring keys to the ring rungs only).

examples:
  python -m ablations run ladder --task listops_mini --seeds 3
  python -m ablations run ladder --task listops_mini --seeds 3 --dry-run
  python -m ablations run ladder --experiment mini/pathfinder --seeds 3 --launcher joblib \\
      -- hydra.launcher.n_jobs=4
  python -m ablations run ladder --task listops --seeds 2 --rungs rnn_tanh,linear_dense,lru \\
      --baselines s5 -- task.data_dir=~/lra_release trainer=default
  python -m ablations run ladder --task listops_mini --seeds 1 --baselines none \\
      -- model.r_min=0.0,0.5 model.r_max=0.99
"""

TABLE_EXAMPLES = """\
Reads every run under RUNS_DIR (summary.json, config.yaml), groups by task x model/rung and
shows the test accuracy (%) as mean ± standard error over seeds with the number of seeds,
beside the papers' numbers (ablations.reference) and the difference. A failed or missing
run is counted and flagged, never taken as zero.

layouts: lra = models x the six LRA tasks + average; ladder = every rung (in ladder order)
and the baselines present x the tasks present.

examples:
  python -m ablations table results/multirun/ladder/listops_mini/<time>
  python -m ablations table results/multirun --layout lra --format latex --out lra.tex
  python -m ablations table RUNS_DIR --format csv --no-paper
"""

STATE_NORMS_EXAMPLES = """\
For every finished run under RUNS_DIR: its test accuracy and the mean hidden-state norm
||x_t|| / sqrt(n) of its recurrent layers on the first test examples, for the model at
initialisation (the run's seed) and trained (its best checkpoint; runs whose checkpoints
are not kept show no trained norm). Gamma normalisation keeps the first near 1.

examples:
  python -m ablations state-norms results/mini/runs/pathfinder_gamma
  python -m ablations state-norms RUNS_DIR --format csv --out norms.csv
"""

EXTRAPOLATE_EXAMPLES = """\
Evaluates trained runs of a per-token task (selective_copy, induction_heads, mqar) on fresh
examples at each length (the Griffin paper's Section 6.2 and Fig. 6: induction heads trained
at length 256, evaluated at longer lengths). At each length, N examples are drawn with the
task's generator and the run's other generator options (task.generate.args), seeded by
--seed and the length, so every run sees the same examples; each run's checkpoint is rebuilt
for the length (MQA's automatic window covers it, S4 is refolded; an attention window set in
a run's config is kept, and a note says so) and scored as the trainer scores: accuracy over
scored positions and sequence accuracy (every scored position of an example right).

Prints a table; --out writes it as CSV (columns: run, task, model, rung, seed, train_length,
length, accuracy, sequence_accuracy, n); --plot draws accuracy against length (log2 axis),
one line per rung/model (mean ± standard error when several seeds of it are given), the
training length dashed.

examples:
  python -m ablations extrapolate runs/induction/hawk/seed0 runs/induction/mqa/seed0 \\
      --lengths 256,512,1024,2048,4096 --out length.csv --plot length.png
  python -m ablations extrapolate RUN_DIR --lengths 64,128 --n 200 --which latest
"""


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="python -m ablations", formatter_class=fmt, epilog=MAIN_EXAMPLES,
        description="The LRU ablation suite: run the ladder, tabulate runs against the papers, "
                    "plot them.")
    commands = parser.add_subparsers(dest="command", required=True,
                                     metavar="{run,table,plot,state-norms,extrapolate}")

    run = commands.add_parser("run", help="run a sweep (the ladder)", formatter_class=fmt,
                              epilog=RUN_EXAMPLES, description="Run a suite of training jobs.")
    suites = run.add_subparsers(dest="suite", required=True, metavar="{ladder}")
    ladder = suites.add_parser(
        "ladder", help="every rung and the baselines over seeds", formatter_class=fmt,
        description=LADDER_EXAMPLES)
    ladder.add_argument("--task", help="task config, conf/task/<TASK>.yaml (e.g. listops_mini)")
    ladder.add_argument("--experiment",
                        help="experiment config to start from, conf/experiment/<EXPERIMENT>.yaml "
                             "(e.g. mini/listops)")
    ladder.add_argument("--seeds", type=int, default=3, help="seeds 0..SEEDS-1 (default 3)")
    ladder.add_argument("--rungs", default=",".join(RUNG_NAMES),
                        help="comma-separated rungs (default: all, in ladder order)")
    ladder.add_argument("--baselines", default="s4d,s5",
                        help="comma-separated baseline models, or 'none' (default s4d,s5)")
    ladder.add_argument("--launcher", choices=("basic", "joblib"), default="basic",
                        help="basic: jobs one after another; joblib: parallel processes")
    ladder.add_argument("--out", type=Path,
                        help="sweep folder (default results/multirun/ladder/<task>/<time>)")
    ladder.add_argument("--dry-run", action="store_true",
                        help="print the commands without running them")
    ladder.add_argument("overrides", nargs="*", metavar="-- OVERRIDE",
                        help="Hydra overrides for every job, after --")

    table = commands.add_parser(
        "table", help="tabulate the runs under a folder", formatter_class=fmt,
        description=TABLE_EXAMPLES)
    table.add_argument("runs_dir", type=Path, metavar="RUNS_DIR")
    table.add_argument("--layout", choices=LAYOUTS, default="ladder", help="default ladder")
    table.add_argument("--format", choices=FORMATS, default="markdown", help="default markdown")
    table.add_argument("--out", type=Path, help="also write the table to this file")
    table.add_argument("--no-paper", action="store_true",
                       help="leave out the papers' numbers (ablations.reference)")

    commands.add_parser("plot", help="plots (python -m ablations plot --help)", add_help=False)

    norms = commands.add_parser(
        "state-norms", help="hidden-state norms of runs on their test data, at init and trained",
        formatter_class=fmt, description=STATE_NORMS_EXAMPLES)
    norms.add_argument("runs_dir", type=Path, metavar="RUNS_DIR")
    norms.add_argument("--batch", type=int, default=64,
                       help="test examples to run each model on (default 64)")
    norms.add_argument("--format", choices=("markdown", "csv"), default="markdown",
                       help="default markdown")
    norms.add_argument("--out", type=Path, help="also write the table to this file")

    extra = commands.add_parser(
        "extrapolate", help="accuracy of per-token runs at other lengths than they trained on",
        formatter_class=fmt, description=EXTRAPOLATE_EXAMPLES)
    extra.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                       help="run folders (config.yaml, checkpoints/) of per-token tasks")
    extra.add_argument("--lengths", required=True,
                       help="comma-separated lengths to evaluate at, e.g. 256,512,1024")
    extra.add_argument("--n", type=int, default=1000, help="examples per length (default 1000)")
    extra.add_argument("--batch-size", type=int,
                       help="examples per evaluation batch (default: the run's "
                            "trainer.eval_batch_size x training length / length, so a batch "
                            "holds as many steps as the run's own evaluation)")
    extra.add_argument("--which", choices=("best", "latest"), default="best",
                       help="checkpoint to evaluate (default best)")
    extra.add_argument("--seed", type=int, default=0, help="seed of the examples (default 0)")
    extra.add_argument("--out", type=Path, help="write the results to this CSV file")
    extra.add_argument("--plot", type=Path, metavar="OUT.png",
                       help="draw accuracy against length into this image (.png, .pdf, .svg)")
    return parser


def _split(names: str) -> list[str]:
    return [] if names.strip() in ("", "none") else [n.strip() for n in names.split(",")]


def run_ladder(args: argparse.Namespace) -> int:
    from ablations.ladder import plan_ladder, run_multiruns

    out, multiruns = plan_ladder(
        task=args.task, experiment=args.experiment, seeds=args.seeds, rungs=_split(args.rungs),
        baselines=_split(args.baselines), launcher=args.launcher, out=args.out,
        overrides=args.overrides)
    print(f"sweep folder: {out}")
    failed = run_multiruns(multiruns, dry_run=args.dry_run)
    if args.dry_run:
        return 0
    for m in failed:
        print(f"multirun {m.name} exited with an error (its output is above); rerun its "
              f"command to resume it", file=sys.stderr)
    print(f"tabulate: python -m ablations table {out}")
    return 1 if failed else 0


def make_table(args: argparse.Namespace) -> int:
    from ablations.runs import load_runs
    from ablations.table import build_table, format_table
    from lru.training.runfiles import write_atomic

    reference = None
    if not args.no_paper:
        try:
            from ablations.reference import paper_numbers
        except ImportError as e:
            raise ValueError(f"the papers' numbers are not available ({e}); pass --no-paper "
                             f"to tabulate without them") from None
        reference = paper_numbers(args.layout)
    text = format_table(build_table(load_runs(args.runs_dir), args.layout, reference), args.format)
    if args.out is not None:
        write_atomic(args.out, text)
    print(text, end="")
    return 0


def state_norms(args: argparse.Namespace) -> int:
    from ablations.state_norms import format_norms, measure
    from lru.training.runfiles import write_atomic

    if args.batch < 1:
        raise ValueError(f"--batch must be at least 1; got {args.batch}")
    text = format_norms(measure(args.runs_dir, batch=args.batch), args.format)
    if args.out is not None:
        write_atomic(args.out, text)
    print(text, end="")
    return 0


def extrapolate(args: argparse.Namespace) -> int:
    from ablations.extrapolate import (extrapolate as evaluate_lengths, format_frame,
                                       open_run, parse_lengths, window_note)
    from ablations.plots import FORMATS, plot_extrapolation
    from lru.training.runfiles import write_atomic

    if args.plot is not None and args.plot.suffix.lower() not in FORMATS:
        raise ValueError(f"--plot {args.plot}: the extension must be one of {', '.join(FORMATS)}")
    lengths = parse_lengths(args.lengths)
    for run_dir in args.run_dirs:
        note = window_note(open_run(run_dir, args.which))
        if note:
            print(f"note: {note}", file=sys.stderr)
    frame = evaluate_lengths(args.run_dirs, lengths, n=args.n,
                             batch_size=args.batch_size, which=args.which, seed=args.seed)
    print(format_frame(frame), end="")
    if args.out is not None:
        write_atomic(args.out, format_frame(frame, "csv"))
        print(f"wrote {args.out}")
    if args.plot is not None:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot_extrapolation(frame).savefig(args.plot, dpi=150)
        print(f"wrote {args.plot}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["plot"]:
        from ablations.plots import main as plot_main

        return plot_main(argv[1:]) or 0
    from hydra.errors import HydraException

    args = build_parser().parse_args(argv)
    try:
        commands = {"run": run_ladder, "table": make_table, "state-norms": state_norms,
                    "extrapolate": extrapolate}
        return commands[args.command](args)
    except (ValueError, FileNotFoundError, HydraException) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
