"""Recall (the synthetic task, not LRA): the generator against the label's definition, its
determinism and options, the reader and its cache, the errors, and `python -m tasks`."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tasks
from tasks.__main__ import main as cli_main
from tasks.base import DataNotFoundError
from tasks.generate import recall as gen
from tasks.recall import N_CLASSES, VOCAB_SIZE, split_file

KW = dict(n_train=203, n_val=24, n_test=17, min_length=20, max_length=60)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("recall")
    gen.generate(out, n_distractors=5, seed=3, **KW)
    return out


def read(folder, split) -> dict[str, np.ndarray]:
    with np.load(split_file(folder, split)) as archive:
        return {n: archive[n] for n in archive.files}


def test_labels_are_the_first_token_and_the_rest_is_distractors(generated):
    sizes = {"train": KW["n_train"], "val": KW["n_val"], "test": KW["n_test"]}
    for split, n in sizes.items():
        arrays = read(generated, split)
        assert sorted(arrays) == ["inputs", "labels", "lengths"]
        inputs, lengths, labels = arrays["inputs"], arrays["lengths"], arrays["labels"]
        assert inputs.shape == (n, KW["max_length"]) and inputs.dtype == np.int32
        for row, length, label in zip(inputs, lengths, labels):
            assert KW["min_length"] <= length <= KW["max_length"]
            assert row[0] == label + 1  # the key: ids 1..8 are labels 0..7
            rest = row[1:length]
            # the distractors: the first 5 ids after the keys, never a key, never padding
            assert set(rest.tolist()) <= set(range(N_CLASSES + 1, N_CLASSES + 6))
            assert not row[length:].any()
        # balanced classes: chance = majority rate = 1 / N_CLASSES up to the remainder
        counts = np.bincount(labels, minlength=N_CLASSES)
        assert counts.max() - counts.min() <= 1 and counts.sum() == n
    train = read(generated, "train")
    assert len(np.unique(train["lengths"])) > 20  # lengths vary: padding masks are used
    used = np.unique(train["inputs"][:, 1:])
    assert set(used.tolist()) == {0} | set(range(N_CLASSES + 1, N_CLASSES + 6))


def test_one_distractor_is_a_filler():
    arrays = gen.sample(50, min_length=5, max_length=9, n_distractors=1,
                        rng=np.random.default_rng(0))
    for row, length in zip(arrays["inputs"], arrays["lengths"]):
        assert (row[1:length] == N_CLASSES + 1).all()


def test_generator_is_deterministic_by_seed(tmp_path):
    a = gen.generate(tmp_path / "a", seed=1, **KW)
    b = gen.generate(tmp_path / "b", seed=1, **KW)
    gen.generate(tmp_path / "c", seed=2, **KW)
    for split in tasks.SPLITS:
        assert (a / f"{split}.npz").read_bytes() == (b / f"{split}.npz").read_bytes()
    assert not np.array_equal(read(tmp_path / "a", "train")["inputs"],
                              read(tmp_path / "c", "train")["inputs"])
    # each split has its own stream: a bigger train split leaves val and test unchanged
    gen.generate(tmp_path / "d", seed=1, **{**KW, "n_train": 300})
    for split in ("val", "test"):
        for name, array in read(tmp_path / "a", split).items():
            np.testing.assert_array_equal(read(tmp_path / "d", split)[name], array)


@pytest.mark.parametrize("bad,match", [
    (dict(n_val=0), "n_val"), (dict(min_length=0), "min_length"),
    (dict(min_length=61, max_length=60), "min_length"), (dict(n_distractors=0), "n_distractors"),
    (dict(n_distractors=VOCAB_SIZE - N_CLASSES), "n_distractors"),
])
def test_generator_rejects_bad_arguments(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        gen.generate(tmp_path, **{**KW, **bad})


def test_reader_round_trip_and_cache(generated, tmp_path):
    cache = tmp_path / "cache"
    train = tasks.load("recall", "train", generated, cache_dir=cache, max_length=60)
    raw = read(generated, "train")
    np.testing.assert_array_equal(train.inputs, raw["inputs"])
    np.testing.assert_array_equal(train.lengths, raw["lengths"])
    np.testing.assert_array_equal(train.labels, raw["labels"])
    assert train.inputs.dtype == train.lengths.dtype == train.labels.dtype == np.int32
    meta = train.meta
    assert (meta.name, meta.n_classes, meta.max_length, meta.vocab_size) == \
        ("recall", N_CLASSES, 60, VOCAB_SIZE)
    again = tasks.load("recall", "train", generated, cache_dir=cache, max_length=60)
    assert isinstance(again.inputs, np.memmap)
    np.testing.assert_array_equal(again.inputs, train.inputs)
    assert len(list(cache.iterdir())) == 1

    # padding beyond the files' width, truncation below it (keeping the key)
    wide = tasks.load("recall", "val", generated, cache_dir=cache)
    assert wide.inputs.shape == (KW["n_val"], 512) and not wide.inputs[:, 60:].any()
    short = tasks.load("recall", "val", generated, cache_dir=cache, max_length=10)
    assert short.inputs.shape == (KW["n_val"], 10) and (short.lengths == 10).all()
    assert list(short.inputs[:, 0] - 1) == list(short.labels)
    assert len(list(cache.iterdir())) == 3  # one entry per max_length


def test_missing_data_names_the_path_and_the_generate_command(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        tasks.load("recall", "val", tmp_path / "nowhere", cache_dir=tmp_path / "c")
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "recall" / "val.npz") in message
    assert "python -m tasks generate recall --out" in message and "not part of LRA" in message


def test_options_are_validated(generated, tmp_path):
    with pytest.raises(ValueError, match="max_length"):
        tasks.load("recall", "train", generated, cache_dir=tmp_path, maxlen=5)
    for bad in (0, -3, 2.5, True, "64"):
        with pytest.raises(ValueError, match="max_length must be a positive int"):
            tasks.load("recall", "train", generated, cache_dir=tmp_path, max_length=bad)


def test_reader_rejects_malformed_files(tmp_path):
    folder = tmp_path / "recall"
    folder.mkdir()
    good = gen.sample(4, min_length=3, max_length=6, n_distractors=2,
                      rng=np.random.default_rng(0))
    bad_files = {
        "missing arrays": {"inputs": good["inputs"], "lengths": good["lengths"]},
        "lengths must lie": {**good, "lengths": good["lengths"] + 7},
        "0 \\(padding\\) after it": {**good, "inputs": np.full_like(good["inputs"], 9)},
        "tokens must be": {**good, "inputs": np.where(good["inputs"] > 0, VOCAB_SIZE, 0)},
        "labels must be": {**good, "labels": good["labels"] + N_CLASSES},
    }
    for match, arrays in bad_files.items():
        np.savez(folder / "train.npz", **arrays)
        with pytest.raises(ValueError, match=match):
            tasks.load("recall", "train", tmp_path, cache_dir=tmp_path / "c")


def test_cli_generate_and_check(tmp_path, capsys):
    rc = cli_main(["generate", "recall", "--out", str(tmp_path), "--n-train", "40",
                   "--n-val", "8", "--n-test", "8", "--min-length", "10", "--max-length", "30",
                   "--n-distractors", "3", "--seed", "0"])
    assert rc == 0
    capsys.readouterr()
    rc = cli_main(["check", "recall", "--data-dir", str(tmp_path), "--cache-dir",
                   str(tmp_path / "cache"), "--option", "max_length=30", "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["meta"]["n_classes"] == N_CLASSES and report["meta"]["vocab_size"] == VOCAB_SIZE
    assert [report["splits"][s]["examples"] for s in tasks.SPLITS] == [40, 8, 8]
    assert report["splits"]["train"]["majority_rate"] == 5 / 40  # balanced: 5 of each class
    assert 10 <= report["splits"]["train"]["lengths"]["min"]
    assert report["splits"]["train"]["lengths"]["max"] <= 30

    rc = cli_main(["generate", "recall", "--out", str(tmp_path), "--n-distractors", "99"])
    assert rc == 2 and "n_distractors" in capsys.readouterr().err
