"""ListOps: the reader on hand-written official files, the generator against an independent
evaluator, the cache keys, the `python -m tasks` command line and `tasks.load`'s errors."""

from __future__ import annotations

import inspect
import json
import statistics

import numpy as np
import pytest

import tasks
from tasks.__main__ import main as cli_main
from tasks.base import DataNotFoundError
from tasks.generate import listops as gen
from tasks.listops import VOCAB

OPS = {"[MIN": min, "[MAX": max, "[MED": lambda a: int(statistics.median(a)),
       "[SM": lambda a: sum(a) % 10}


def evaluate(source: str) -> int:
    """Independent evaluator: a stack machine over the flat token stream (no tree)."""
    stack: list = []
    for tok in source.replace("(", " ").replace(")", " ").split():
        if tok in OPS:
            stack.append([tok])
        elif tok == "]":
            op, *args = stack.pop()
            value = OPS[op](args)
            if not stack:
                return value
            stack[-1].append(value)
        else:
            if not stack:
                return int(tok)
            stack[-1].append(int(tok))
    raise ValueError(f"unbalanced expression: {source}")


def write_official(folder, rows_by_split):
    d = folder / "listops-1000"
    d.mkdir(parents=True)
    for split, rows in rows_by_split.items():
        lines = ["Source\tTarget"] + [f"{s}\t{t}" for s, t in rows]
        (d / f"basic_{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


HAND = {
    "train": [("( ( ( [MAX 2 ) 9 ) ] )", 9), ("( ( ( [SM 4 ) ( ( ( [MIN 7 ) 3 ) ] ) ) ] )", 7),
              ("5", 5)],
    "val": [("( ( ( ( [MED 1 ) 8 ) 4 ) ] )", 4)],
    "test": [("( ( [MIN 0 ) ] )", 0), ("( ( ( [MAX 1 ) 2 ) ] )", 2)],
}


def ids(tokens: str) -> list[int]:
    return [VOCAB.index(t) for t in tokens.split()]


def test_reader_tokens_labels_lengths(tmp_path):
    data = write_official(tmp_path / "lra", HAND)
    train = tasks.load("listops", "train", data, cache_dir=tmp_path / "cache")
    assert train.inputs.shape == (3, 2000) and train.inputs.dtype == np.int32
    assert list(train.labels) == [9, 7, 5]
    assert list(train.lengths) == [4, 7, 1]
    assert list(train.inputs[0, :4]) == ids("[MAX 2 9 ]")
    assert list(train.inputs[1, :7]) == ids("[SM 4 [MIN 7 3 ] ]")
    assert not train.inputs[0, 4:].any()  # padding id 0
    assert train.meta.vocab_size == 16 == len(VOCAB) and train.meta.n_classes == 10
    assert len(tasks.load("listops", "val", data, cache_dir=tmp_path / "cache")) == 1
    test = tasks.load("listops", "test", data, cache_dir=tmp_path / "cache", max_length=3)
    assert test.inputs.shape == (2, 3)
    assert list(test.lengths) == [3, 3]  # truncated to max_length
    assert list(test.inputs[1]) == ids("[MAX 1 2")


def test_reader_errors(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        tasks.load("listops", "train", tmp_path / "nowhere", cache_dir=tmp_path / "c")
    assert str(tmp_path / "nowhere" / "listops-1000" / "basic_train.tsv") in str(err.value)
    assert "lra_release" in str(err.value) and "generate listops" in str(err.value)

    bad_header = tmp_path / "h"
    write_official(bad_header, {"train": HAND["train"]})
    path = bad_header / "listops-1000" / "basic_train.tsv"
    path.write_text(path.read_text().replace("Source\tTarget", "src\ttgt"))
    with pytest.raises(ValueError, match="header"):
        tasks.load("listops", "train", bad_header, cache_dir=tmp_path / "c")

    bad_token = tmp_path / "t"
    write_official(bad_token, {"train": [("( ( [FIRST 2 ) ] )", 2)]})
    with pytest.raises(ValueError, match=r"\[FIRST"):
        tasks.load("listops", "train", bad_token, cache_dir=tmp_path / "c")

    with pytest.raises(ValueError, match="max_length"):
        tasks.load("listops", "train", bad_token, cache_dir=tmp_path / "c", maxlen=5)
    with pytest.raises(ValueError, match="listops"):
        tasks.load("list_ops", "train", bad_token)
    with pytest.raises(ValueError, match="train"):
        tasks.load("listops", "training", bad_token)


def test_cache_is_memory_mapped_and_keyed_by_options(tmp_path):
    data = write_official(tmp_path / "lra", HAND)
    cache = tmp_path / "cache"
    first = tasks.load("listops", "train", data, cache_dir=cache)
    again = tasks.load("listops", "train", data, cache_dir=cache)
    assert isinstance(again.inputs, np.memmap)
    np.testing.assert_array_equal(first.inputs, again.inputs)
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 1
    short = tasks.load("listops", "train", data, cache_dir=cache, max_length=5)
    assert short.inputs.shape == (3, 5)
    assert len(list(cache.iterdir())) == 2  # a new entry, the old one untouched
    # replacing the source file (new size/mtime) can never read the stale entry
    write_official(tmp_path / "lra2", {"train": HAND["train"][:1]})
    (data / "listops-1000" / "basic_train.tsv").write_text(
        (tmp_path / "lra2" / "listops-1000" / "basic_train.tsv").read_text())
    assert len(tasks.load("listops", "train", data, cache_dir=cache)) == 1


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    gen.generate(out, n_train=400, n_val=50, n_test=50, max_depth=5, max_args=5,
                 min_length=10, max_length=120, seed=3, progress=False)
    return out


def read_rows(folder, split):
    lines = (folder / "listops-1000" / f"basic_{split}.tsv").read_text().splitlines()
    assert lines[0] == "Source\tTarget"
    return [(s, int(t)) for s, t in (line.split("\t") for line in lines[1:])]


def test_generator_targets_match_an_independent_evaluator(generated):
    for split in ("train", "val", "test"):
        for source, target in read_rows(generated, split):
            assert evaluate(source) == target, source


def test_generator_lengths_tokens_duplicates_and_labels(generated):
    rows = {s: read_rows(generated, s) for s in ("train", "val", "test")}
    assert [len(rows[s]) for s in ("train", "val", "test")] == [400, 50, 50]
    sources = [src for r in rows.values() for src, _ in r]
    assert len(set(sources)) == len(sources)  # duplicates removed, splits disjoint
    allowed = set(VOCAB[1:]) | {"(", ")"}
    for src in sources:
        toks = src.split()
        assert set(toks) <= allowed
        n = sum(t not in ("(", ")") for t in toks)
        assert 10 < n < 120  # LRA's strict bounds
    labels = np.array([t for r in rows.values() for _, t in r])
    freq = np.bincount(labels, minlength=10) / len(labels)
    print("listops label distribution:", np.round(freq, 3))
    assert (freq > 0.02).all()  # every class occurs
    loaded = tasks.load("listops", "train", generated, cache_dir=generated / "cache",
                        max_length=120)
    assert list(loaded.labels) == [t for _, t in rows["train"]]


def test_generator_is_deterministic_and_lra_by_default(tmp_path):
    kw = dict(n_train=30, n_val=5, n_test=5, max_depth=4, min_length=5, max_length=60,
              progress=False)
    a = gen.generate(tmp_path / "a", seed=1, **kw)
    b = gen.generate(tmp_path / "b", seed=1, **kw)
    c = gen.generate(tmp_path / "c", seed=2, **kw)
    for split in ("train", "val", "test"):
        name = f"basic_{split}.tsv"
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "basic_train.tsv").read_bytes() != (c / "basic_train.tsv").read_bytes()
    defaults = {k: p.default for k, p in inspect.signature(gen.generate).parameters.items()}
    assert defaults["n_train"] == 96_000 and defaults["n_val"] == 2_000
    assert defaults["n_test"] == 2_000 and defaults["max_depth"] == 10
    assert defaults["max_args"] == 10 and defaults["min_length"] == 500
    assert defaults["max_length"] == 2000


def test_to_value_agrees_with_evaluator_on_lra_semantics():
    rng = __import__("random").Random(0)
    for _ in range(300):
        tree, length = gen.generate_tree(rng, 1, 6, 6)
        src = gen.to_string(tree)
        assert gen.to_value(tree) == evaluate(src)
        assert length == sum(t not in ("(", ")") for t in src.split())


def test_cli_generate_and_check(tmp_path, capsys):
    rc = cli_main(["generate", "listops", "--out", str(tmp_path), "--n-train", "40",
                   "--n-val", "10", "--n-test", "10", "--max-depth", "4", "--min-length", "5",
                   "--max-length", "80", "--seed", "0"])
    assert rc == 0
    capsys.readouterr()
    rc = cli_main(["check", "listops", "--data-dir", str(tmp_path), "--cache-dir",
                   str(tmp_path / "cache"), "--option", "max_length=64", "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["options"] == {"max_length": 64}
    assert [report["splits"][s]["examples"] for s in ("train", "val", "test")] == [40, 10, 10]
    assert sum(report["splits"]["train"]["classes"].values()) == 40
    assert report["splits"]["train"]["lengths"]["max"] <= 64

    rc = cli_main(["check", "listops", "--data-dir", str(tmp_path / "missing")])
    assert rc == 2
    assert str(tmp_path / "missing" / "listops-1000" / "basic_train.tsv") in capsys.readouterr().err
