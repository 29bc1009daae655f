"""``python -m tasks``: generate data offline (LRA tasks, the synthetic ones), or check a folder.

    python -m tasks generate listops --out DATA [--n-train 96000 ...]
    python -m tasks generate pathfinder --out DATA [--n-examples 200000 --resolution 32 ...]
    python -m tasks generate recall --out DATA [--n-train 4000 --min-length 256 ...]
    python -m tasks generate selective_copy --out DATA [--length 256 --n-data 16 ...]
    python -m tasks generate induction_heads --out DATA [--length 256 ...]
    python -m tasks generate mqar --out DATA [--length 64 --n-pairs 4 ...]
    python -m tasks check listops --data-dir DATA [--json] [--option max_length=512]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import tasks
from tasks import induction_heads, mqar, selective_copy
from tasks.base import IGNORE, SPLITS, DataNotFoundError, majority_rate
from tasks.seq2seq import DEFAULT_SIZES


def _parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"options are KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a bare string, e.g. difficulty=curv_baseline


def _stats(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values)
    return {"min": int(values.min()), "mean": round(float(values.mean()), 2),
            "median": float(np.median(values)), "max": int(values.max())}


def summarize(split: tasks.Split) -> dict[str, Any]:
    """Counts, length statistics and the balance of the labels of one split, JSON-able.

    A sequence task's balance is its classes; a per-token task's is the number of scored
    positions per example and the distribution of the targets there (by token id). Either
    way ``majority_rate`` is the accuracy of always predicting the most frequent label.
    """
    labels = np.asarray(split.labels)
    out: dict[str, Any] = {
        "examples": len(split),
        "lengths": _stats(split.lengths),
        "at_max_length": int(np.sum(np.asarray(split.lengths) >= split.meta.max_length)),
    }
    if split.meta.per_token:
        scored = labels != IGNORE
        counts = np.bincount(labels[scored], minlength=split.meta.n_classes)
        out["scored_per_example"] = _stats(scored.sum(axis=1))
        out["targets"] = {str(c): int(n) for c, n in enumerate(counts) if n}
    else:
        counts = np.bincount(labels, minlength=split.meta.n_classes)
        out["classes"] = {str(c): int(n) for c, n in enumerate(counts)}
    out["majority_rate"] = round(majority_rate(split), 4)
    if split.lengths2 is not None:
        out["lengths2"] = _stats(split.lengths2)
    return out


def check(name: str, data_dir: Path, options: dict[str, Any], cache_dir: Path | None) -> dict:
    """Load every split of ``name`` and summarise it; raises DataNotFoundError on a bad layout."""
    report: dict[str, Any] = {"task": name, "data_dir": str(data_dir),
                              "options": tasks.resolve_options(name, **options), "splits": {}}
    for split in SPLITS:
        loaded = tasks.load(name, split, data_dir, cache_dir=cache_dir, **options)
        report["splits"][split] = summarize(loaded)
        report["meta"] = {"n_classes": loaded.meta.n_classes, "max_length": loaded.meta.max_length,
                          "vocab_size": loaded.meta.vocab_size, "channels": loaded.meta.channels,
                          "per_token": loaded.meta.per_token}
    return report


def _print_report(report: dict) -> None:
    print(f"{report['task']} in {report['data_dir']}  options {report['options']}")
    print(f"  meta {report['meta']}")
    for split, s in report["splits"].items():
        lens = s["lengths"]
        if "targets" in s:  # per-token
            scored = s["scored_per_example"]
            counts = s["targets"]
            targets = (" ".join(f"{c}:{n}" for c, n in counts.items()) if len(counts) <= 20 else
                       f"{len(counts)} ids {min(counts, key=int)}..{max(counts, key=int)}, "
                       f"{min(counts.values())}..{max(counts.values())} each")
            balance = (f"scored per example min {scored['min']} mean {scored['mean']} max "
                       f"{scored['max']}  targets {targets}")
        else:
            balance = "classes " + " ".join(f"{c}:{n}" for c, n in s["classes"].items())
        print(f"  {split:5s} {s['examples']:7d} examples  length min {lens['min']} "
              f"mean {lens['mean']} max {lens['max']} ({s['at_max_length']} at max length)  "
              f"{balance}  majority {s['majority_rate']:.1%}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tasks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a data set (LRA tasks in the official layout)")
    gen_sub = gen.add_subparsers(dest="task", required=True)
    lo = gen_sub.add_parser("listops", help="ListOps by LRA's algorithm (defaults = LRA's)",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    lo.add_argument("--out", type=Path, required=True, help="folder to write listops-1000/ into")
    lo.add_argument("--n-train", type=int, default=96_000, help="training examples")
    lo.add_argument("--n-val", type=int, default=2_000, help="validation examples")
    lo.add_argument("--n-test", type=int, default=2_000, help="test examples")
    lo.add_argument("--max-depth", type=int, default=10, help="maximum tree depth")
    lo.add_argument("--max-args", type=int, default=10, help="maximum arguments per operator")
    lo.add_argument("--min-length", type=int, default=500, help="keep trees longer than this")
    lo.add_argument("--max-length", type=int, default=2000, help="keep trees shorter than this")
    lo.add_argument("--seed", type=int, default=0, help="random seed")

    pf = gen_sub.add_parser("pathfinder", help="Pathfinder images and metadata",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    pf.add_argument("--out", type=Path, required=True, help="folder to write pathfinderN/ into")
    pf.add_argument("--n-examples", type=int, default=200_000, help="images to draw")
    pf.add_argument("--resolution", type=int, default=32, help="image side (Path-X: 128)")
    pf.add_argument("--difficulty", default="curv_contour_length_14",
                    choices=("curv_baseline", "curv_contour_length_9", "curv_contour_length_14"),
                    help="contour length")
    pf.add_argument("--seed", type=int, default=0, help="random seed")
    pf.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")

    rc = gen_sub.add_parser("recall", help="the synthetic recall task (not LRA): a key, then "
                            "distractors", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    rc.add_argument("--out", type=Path, required=True, help="folder to write recall/ into")
    rc.add_argument("--n-train", type=int, default=4000, help="training examples")
    rc.add_argument("--n-val", type=int, default=500, help="validation examples")
    rc.add_argument("--n-test", type=int, default=500, help="test examples")
    rc.add_argument("--min-length", type=int, default=256, help="shortest sequence (key included)")
    rc.add_argument("--max-length", type=int, default=512, help="longest sequence (key included)")
    rc.add_argument("--n-distractors", type=int, default=1,
                    help="distinct distractor tokens after the key (1: a filler; at most 15)")
    rc.add_argument("--seed", type=int, default=0, help="random seed")

    def per_token(name: str, help: str) -> argparse.ArgumentParser:
        sp = gen_sub.add_parser(name, help=help,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        sp.add_argument("--out", type=Path, required=True, help=f"folder to write {name}/ into")
        for split, n in DEFAULT_SIZES.items():
            sp.add_argument(f"--n-{split}", type=int, default=n, help=f"{split} examples")
        sp.add_argument("--seed", type=int, default=0, help="random seed")
        return sp

    sc = per_token("selective_copy", "selective copying (Mamba §4.1, Griffin §6.2; per-token)")
    sc.add_argument("--length", type=int, default=selective_copy.DEFAULT_LENGTH,
                    help="steps per example, the markers included (Griffin: 1024)")
    sc.add_argument("--n-data", type=int, default=selective_copy.DEFAULT_N_DATA,
                    help="data tokens to copy")
    ih = per_token("induction_heads", "induction heads (Mamba §4.1, Griffin §6.2; per-token)")
    ih.add_argument("--length", type=int, default=induction_heads.DEFAULT_LENGTH,
                    help="steps per example, the final special token included")
    mq = per_token("mqar", "multi-query associative recall (Zoology; per-token)")
    zoology = ", ".join(f"({length}, {pairs})" for length, pairs in mqar.CONFIGURATIONS)
    mq.add_argument("--length", type=int, default=mqar.DEFAULT_LENGTH,
                    help=f"steps per example; Zoology's (length, pairs): {zoology}")
    mq.add_argument("--n-pairs", type=int, default=mqar.DEFAULT_N_PAIRS,
                    help="key-value pairs, each key queried once")
    mq.add_argument("--power-a", type=float, default=mqar.DEFAULT_POWER_A,
                    help="power law of the query positions (1: uniform)")

    ck = sub.add_parser("check", help="validate a data folder and print split statistics")
    ck.add_argument("task", choices=tasks.TASK_NAMES)
    ck.add_argument("--data-dir", type=Path, required=True,
                    help="the unpacked lra_release folder (or a generated one)")
    ck.add_argument("--option", type=_parse_option, action="append", default=[],
                    metavar="KEY=VALUE", help="task option, e.g. max_length=512 (repeatable)")
    ck.add_argument("--cache-dir", type=Path, default=None,
                    help="preprocessing cache (default $LRU_DATA_CACHE or ~/.cache/lru-harness)")
    ck.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "generate":  # every flag is the generator's keyword argument
            options = {k: v for k, v in vars(args).items() if k not in ("command", "task", "out")}
            module = importlib.import_module(f"tasks.generate.{args.task}")
            print(f"wrote {module.generate(args.out, **options)}")
        else:
            report = check(args.task, args.data_dir, dict(args.option), args.cache_dir)
            if args.json:
                print(json.dumps(report))
            else:
                _print_report(report)
    except DataNotFoundError as e:
        print(f"error: data not found: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
