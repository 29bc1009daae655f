"""The synthetic per-token tasks (selective copying, induction heads, MQAR): the generators
against a plain-Python decoding of each task's definition written here (answer positions,
vocabulary ranges, targets, IGNORE elsewhere, and that each target follows from the inputs
up to its position), their determinism and options, ``sample`` at other lengths, the
reader and its cache, the errors, ``python -m tasks generate|check`` and the configs."""

from __future__ import annotations

import inspect
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import tasks
from lru.training.config import register
from tasks.__main__ import main as cli_main
from tasks.base import IGNORE, DataNotFoundError
from tasks.generate import induction_heads as gen_ih
from tasks.generate import mqar as gen_mqar
from tasks.generate import selective_copy as gen_sc
from tasks.seq2seq import split_file, to_file

CONF = Path(__file__).resolve().parents[1] / "conf"
register()

# The layouts as the task modules document them, written out here.
SC_NOISE, SC_DATA, SC_MARKER, SC_VOCAB = 1, range(2, 16), 16, 17
IH_TRIGGER, IH_TOKENS, IH_VOCAB = 1, range(2, 16), 16
MQ_KEYS, MQ_VALUES, MQ_VOCAB = range(1, 128), range(128, 256), 256

SIZES = dict(n_train=40, n_val=12, n_test=9)
#: name -> (generator module, its options for the tiny files, the vocabulary).
GENERATORS = {
    "selective_copy": (gen_sc, dict(length=40, n_data=6), SC_VOCAB),
    "induction_heads": (gen_ih, dict(length=30), IH_VOCAB),
    "mqar": (gen_mqar, dict(length=48, n_pairs=5), MQ_VOCAB),
}


# ------------------------------------------------------------------ the independent decoding


def answer_selective_copy(prefix: list[int]) -> int | None:
    """The token to emit after reading ``prefix``: at the j-th marker, the j-th data token."""
    if prefix[-1] != SC_MARKER:
        return None
    data = [t for t in prefix if t in SC_DATA]
    return data[prefix.count(SC_MARKER) - 1]


def answer_induction_heads(prefix: list[int]) -> int | None:
    """At the second special token, the token after the first."""
    if prefix[-1] != IH_TRIGGER or prefix.count(IH_TRIGGER) != 2:
        return None
    return prefix[prefix.index(IH_TRIGGER) + 1]


def answer_mqar(prefix: list[int], n_pairs: int) -> int | None:
    """After the pairs, at a key: the value that followed it among the pairs."""
    if len(prefix) <= 2 * n_pairs:
        return None
    pairs = dict(zip(prefix[0:2 * n_pairs:2], prefix[1:2 * n_pairs:2]))
    return pairs.get(prefix[-1])


def check_selective_copy(inputs, length, labels, n_data):
    row, targets = inputs[:length].tolist(), labels[:length].tolist()
    markers = [i for i, t in enumerate(row) if t == SC_MARKER]
    assert markers == list(range(length - n_data, length))
    data = [t for t in row if t in SC_DATA]
    assert len(data) == n_data
    assert all(t in (SC_NOISE, *SC_DATA) for t in row[:length - n_data])
    assert [targets[i] for i in markers] == data  # the data tokens, in order
    assert all(targets[i] == IGNORE for i in range(length) if i not in markers)
    for i in markers:  # the answer follows from the inputs up to the marker
        assert answer_selective_copy(row[:i + 1]) == targets[i]


def check_induction_heads(inputs, length, labels):
    row, targets = inputs[:length].tolist(), labels[:length].tolist()
    triggers = [i for i, t in enumerate(row) if t == IH_TRIGGER]
    assert len(triggers) == 2 and triggers[1] == length - 1 and triggers[0] <= length - 4
    assert all(t in IH_TOKENS for i, t in enumerate(row) if i not in triggers)
    assert targets[:-1] == [IGNORE] * (length - 1)
    assert targets[-1] == row[triggers[0] + 1]
    assert answer_induction_heads(row) == targets[-1]


def check_mqar(inputs, length, labels, n_pairs):
    row, targets = inputs[:length].tolist(), labels[:length].tolist()
    keys, values = row[0:2 * n_pairs:2], row[1:2 * n_pairs:2]
    assert all(k in MQ_KEYS for k in keys) and len(set(keys)) == n_pairs
    assert all(v in MQ_VALUES for v in values) and len(set(values)) == n_pairs
    assert all(1 <= t < MQ_VOCAB for t in row)
    scored = [i for i, t in enumerate(targets) if t != IGNORE]
    assert all(i >= 2 * n_pairs and (i - 2 * n_pairs) % 2 == 0 for i in scored)
    assert sorted(row[i] for i in scored) == sorted(keys)  # every key queried exactly once
    for i in scored:
        assert targets[i] == values[keys.index(row[i])]
        assert answer_mqar(row[:i + 1], n_pairs) == targets[i]


def check_layout(name: str, arrays: dict[str, np.ndarray], options: dict) -> None:
    inputs, lengths, labels = arrays["inputs"], arrays["lengths"], arrays["labels"]
    assert inputs.shape == labels.shape == (len(lengths), inputs.shape[1])
    for row, length, targets in zip(inputs, lengths, labels):
        assert not row[length:].any() and (targets[length:] == IGNORE).all()
        if name == "selective_copy":
            check_selective_copy(row, length, targets, options["n_data"])
        elif name == "induction_heads":
            check_induction_heads(row, length, targets)
        else:
            check_mqar(row, length, targets, options["n_pairs"])


def read(folder: Path, name: str, split: str) -> dict[str, np.ndarray]:
    with np.load(split_file(folder, name, split)) as archive:
        return {n: archive[n] for n in archive.files}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seq2seq")
    for module, options, _ in GENERATORS.values():
        module.generate(out, seed=3, **SIZES, **options)
    return out


# ------------------------------------------------------------------ generators


@pytest.mark.parametrize("name", GENERATORS)
def test_generated_files_follow_the_layout(generated, name):
    _, options, _ = GENERATORS[name]
    for split in tasks.SPLITS:
        arrays = read(generated, name, split)
        assert sorted(arrays) == ["inputs", "labels", "lengths"]
        assert len(arrays["inputs"]) == SIZES[f"n_{split}"]
        assert (arrays["lengths"] == options["length"]).all()
        check_layout(name, arrays, options)


@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.parametrize("length", [64, 1024])
def test_sample_works_at_any_length(name, length):
    module, options, _ = GENERATORS[name]
    options = {**options, "length": length}
    arrays = module.sample(6, rng=np.random.default_rng(length), **options)
    assert {a.dtype for a in arrays.values()} == {np.dtype(np.int32)}
    assert arrays["inputs"].shape == (6, length)
    check_layout(name, arrays, options)


def test_sample_defaults_are_the_papers():
    sc = gen_sc.sample(2, rng=np.random.default_rng(0))
    assert sc["inputs"].shape == (2, 256) and ((sc["labels"] != IGNORE).sum(1) == 16).all()
    ih = gen_ih.sample(2, rng=np.random.default_rng(0))
    assert ih["inputs"].shape == (2, 256)
    mq = gen_mqar.sample(2, rng=np.random.default_rng(0))
    assert mq["inputs"].shape == (2, 64) and ((mq["labels"] != IGNORE).sum(1) == 4).all()
    for length, n_pairs in ((64, 4), (128, 8), (256, 16)):  # Zoology's configurations
        arrays = gen_mqar.sample(3, length=length, n_pairs=n_pairs, rng=np.random.default_rng(0))
        check_layout("mqar", arrays, {"n_pairs": n_pairs})


def test_positions_and_tokens_are_spread():
    """The random choices cover their ranges (a fixed position would pass the layout)."""
    sc = gen_sc.sample(400, length=40, n_data=4, rng=np.random.default_rng(0))
    first_data = np.argmax(np.isin(sc["inputs"], list(SC_DATA)), axis=1)
    assert first_data.min() == 0 and first_data.max() > 20
    assert set(np.unique(sc["labels"][sc["labels"] != IGNORE])) == set(SC_DATA)
    ih = gen_ih.sample(2000, length=20, rng=np.random.default_rng(0))
    first = np.argmax(ih["inputs"] == IH_TRIGGER, axis=1)
    assert set(first.tolist()) == set(range(0, 20 - 3))  # 0 .. length - 4, as safari
    assert set(ih["labels"][:, -1].tolist()) == set(IH_TOKENS)


def test_mqar_query_slots_follow_the_power_law():
    """Successive sampling without replacement, P(slot g) ~ (g + 1) ** (power_a - 1): with two
    queries in four slots, each pair of slots has probability p_a p_b / (1 - p_a) +
    p_b p_a / (1 - p_b), computed here from the definition."""
    n, pairs, slots = 40_000, 2, 4
    for power_a in (0.01, 1.0, 0.5):
        weights = np.arange(1, slots + 1) ** (power_a - 1.0)
        p = weights / weights.sum()
        arrays = gen_mqar.sample(n, length=2 * pairs + 2 * slots, n_pairs=pairs,
                                 power_a=power_a, rng=np.random.default_rng(1))
        where = np.nonzero(arrays["labels"] != IGNORE)[1].reshape(n, pairs)
        chosen = np.sort((where - 2 * pairs) // 2, axis=1)
        for a, b in itertools.combinations(range(slots), 2):
            expected = p[a] * p[b] / (1 - p[a]) + p[b] * p[a] / (1 - p[b])
            seen = np.mean((chosen[:, 0] == a) & (chosen[:, 1] == b))
            assert seen == pytest.approx(expected, abs=0.01), (power_a, a, b)


def test_generators_are_deterministic_by_seed(tmp_path):
    for name, (module, options, _) in GENERATORS.items():
        a = module.generate(tmp_path / "a", seed=1, **SIZES, **options)
        b = module.generate(tmp_path / "b", seed=1, **SIZES, **options)
        module.generate(tmp_path / "c", seed=2, **SIZES, **options)
        for split in tasks.SPLITS:
            assert (a / f"{split}.npz").read_bytes() == (b / f"{split}.npz").read_bytes(), name
        assert not np.array_equal(read(tmp_path / "a", name, "train")["inputs"],
                                  read(tmp_path / "c", name, "train")["inputs"]), name
        # each split has its own stream: val and test are not train's first examples, and a
        # bigger train split leaves them unchanged
        train = read(tmp_path / "a", name, "train")["inputs"]
        for split in ("val", "test"):
            held_out = read(tmp_path / "a", name, split)["inputs"]
            assert not np.array_equal(held_out, train[:len(held_out)]), (name, split)
        module.generate(tmp_path / "d", seed=1, **{**SIZES, "n_train": 50}, **options)
        for split in ("val", "test"):
            for key, array in read(tmp_path / "a", name, split).items():
                np.testing.assert_array_equal(read(tmp_path / "d", name, split)[key], array)


@pytest.mark.parametrize("module,bad,match", [
    (gen_sc, dict(length=40, n_data=0), "n_data"), (gen_sc, dict(length=11, n_data=6), "length"),
    (gen_ih, dict(length=3), "length"),
    (gen_mqar, dict(length=48, n_pairs=0), "n_pairs"),
    (gen_mqar, dict(length=1024, n_pairs=128), "n_pairs"),
    (gen_mqar, dict(length=19, n_pairs=5), "length"),
    (gen_mqar, dict(length=48, n_pairs=5, power_a=0.0), "power_a"),
    (gen_sc, dict(length=40, n_data=6, n_val=0), "n_val"),
])
def test_generators_reject_bad_arguments(tmp_path, module, bad, match):
    with pytest.raises(ValueError, match=match):
        module.generate(tmp_path, **{**SIZES, **bad})
    assert not list(tmp_path.iterdir())  # nothing written


def test_files_store_compact_types_and_refuse_overflow():
    arrays = to_file(gen_mqar.sample(3, rng=np.random.default_rng(0)))
    assert [arrays[n].dtype for n in ("inputs", "lengths", "labels")] == \
        [np.uint8, np.int32, np.int16]
    with pytest.raises(ValueError, match="inputs holds 1..300"):
        to_file({**arrays, "inputs": np.array([[1, 300]])})


# ------------------------------------------------------------------ the reader


@pytest.mark.parametrize("name", GENERATORS)
def test_reader_round_trip_padding_and_cache(generated, name, tmp_path):
    _, options, vocab = GENERATORS[name]
    length = options["length"]
    cache = tmp_path / "cache"
    train = tasks.load(name, "train", generated, cache_dir=cache, max_length=length)
    raw = read(generated, name, "train")
    for key in ("inputs", "lengths", "labels"):
        np.testing.assert_array_equal(getattr(train, key), raw[key])
        assert getattr(train, key).dtype == np.int32
    meta = train.meta
    assert meta.per_token and meta.n_classes == meta.vocab_size == vocab
    assert meta.name == name and meta.max_length == length
    again = tasks.load(name, "train", generated, cache_dir=cache, max_length=length)
    assert isinstance(again.labels, np.memmap)
    np.testing.assert_array_equal(again.labels, train.labels)

    # padding: inputs 0 and targets IGNORE beyond the files' width
    wide = tasks.load(name, "val", generated, cache_dir=cache, max_length=length + 7)
    assert wide.inputs.shape == wide.labels.shape == (SIZES["n_val"], length + 7)
    assert not wide.inputs[:, length:].any() and (wide.labels[:, length:] == IGNORE).all()
    check_layout(name, wide.arrays(), options)
    # never truncation: it would cut answers
    with pytest.raises(ValueError, match=f"max_length={length - 1} would cut.*at least {length}"):
        tasks.load(name, "val", generated, cache_dir=cache, max_length=length - 1)


def test_reader_defaults_are_the_generators(tmp_path):
    for name, (module, _, _) in GENERATORS.items():
        default = inspect.signature(module.generate).parameters["length"].default
        assert tasks.resolve_options(name) == {"max_length": default}


@pytest.mark.parametrize("name", GENERATORS)
def test_missing_data_names_the_path_and_the_generate_command(tmp_path, name):
    with pytest.raises(DataNotFoundError) as err:
        tasks.load(name, "val", tmp_path / "nowhere", cache_dir=tmp_path / "c")
    message = str(err.value)
    assert str(tmp_path / "nowhere" / name / "val.npz") in message
    assert f"python -m tasks generate {name} --out" in message


def test_options_are_validated(generated, tmp_path):
    with pytest.raises(ValueError, match="max_length"):
        tasks.load("mqar", "train", generated, cache_dir=tmp_path, length=48)
    for bad in (0, 2.5, True, "64"):
        with pytest.raises(ValueError, match="max_length must be a positive int"):
            tasks.load("mqar", "train", generated, cache_dir=tmp_path, max_length=bad)


def corruptions(name: str, good: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Bad versions of ``good`` by the message each must raise."""
    inputs, labels = good["inputs"], good["labels"]
    scored = np.argwhere(labels != IGNORE)[0]
    vocab = GENERATORS[name][2]

    def with_label(value, at=tuple(scored)):
        out = labels.copy()
        out[at] = value
        return {**good, "labels": out}

    cut = good["lengths"].copy()  # row 0 ends at its first scored position, which is kept
    cut[0] = scored[1]
    bad = {
        "missing arrays": {"inputs": inputs, "lengths": good["lengths"]},
        "expected inputs \\(e, w\\), lengths \\(e,\\), labels \\(e, w\\)":
            {**good, "labels": labels[:, 0]},
        "lengths must lie": {**good, "lengths": good["lengths"] + 1},
        "0 \\(padding\\) after it": {**good, "lengths": good["lengths"] - 1},
        "tokens must be": {**good, "inputs": np.where(inputs == inputs[0, 0], vocab, inputs)},
        "targets must be token ids": with_label(vocab),
        "every example needs a scored position": {**good, "labels": np.full_like(labels, IGNORE)},
        f"targets on padding must be {IGNORE}":
            {**good, "lengths": cut, "inputs": np.where(np.arange(inputs.shape[1]) >= cut[:, None],
                                                        0, inputs)},
    }
    other = {"selective_copy": 2 + (labels[tuple(scored)] - 1) % 14,
             "induction_heads": 2 + (labels[tuple(scored)] - 1) % 14,
             "mqar": 128 + (labels[tuple(scored)] - 127) % 128}[name]
    task_specific = {"selective_copy": "data tokens, in order",
                     "induction_heads": "token after the first trigger",
                     "mqar": "its key's value"}[name]
    bad[task_specific] = with_label(other)
    return bad


@pytest.mark.parametrize("name", GENERATORS)
def test_reader_rejects_malformed_files(tmp_path, name):
    module, options, _ = GENERATORS[name]
    good = module.sample(4, rng=np.random.default_rng(0), **options)
    path = split_file(tmp_path, name, "train")
    path.parent.mkdir()
    for match, arrays in corruptions(name, good).items():
        np.savez(path, **arrays)
        with pytest.raises(ValueError, match=match) as err:
            tasks.load(name, "train", tmp_path, cache_dir=tmp_path / "c",
                       max_length=options["length"])
        assert str(path) in str(err.value) and f"python -m tasks generate {name}" in str(err.value)


def test_task_checks_catch_layouts_the_generic_checks_pass(tmp_path):
    """A file whose tokens and targets are in range but not where the task puts them."""
    sc = to_file(gen_sc.sample(3, length=20, n_data=4, rng=np.random.default_rng(0)))
    ih = to_file(gen_ih.sample(3, length=20, rng=np.random.default_rng(0)))
    mq = to_file(gen_mqar.sample(3, length=24, n_pairs=4, rng=np.random.default_rng(0)))
    shifted = np.roll(sc["labels"], -1, axis=1)  # targets one step before the markers
    extra_trigger = ih["inputs"].copy()
    extra_trigger[:, -2] = IH_TRIGGER
    repeated_key = mq["inputs"].copy()
    repeated_key[:, 2] = repeated_key[:, 0]
    early_query = mq["labels"].copy()  # row 0's first query moved into the pairs
    first = np.argmax(early_query[0] != IGNORE)
    early_query[0, 1], early_query[0, first] = early_query[0, first], IGNORE
    dropped_query = mq["labels"].copy()  # row 1 queries one key fewer
    dropped_query[1, np.argmax(dropped_query[1] != IGNORE)] = IGNORE
    cases = [
        ("selective_copy", 20, {**sc, "labels": shifted}, "targets must sit at the markers"),
        ("selective_copy", 20, {**sc, "inputs": np.where(sc["inputs"] == SC_MARKER, SC_NOISE,
                                                         sc["inputs"])},
         "as many data tokens as markers"),
        ("induction_heads", 20, {**ih, "inputs": extra_trigger}, "trigger 1 twice"),
        ("induction_heads", 20, {**ih, "labels": np.roll(ih["labels"], -1, axis=1)},
         "only the last step"),
        ("mqar", 24, {**mq, "inputs": repeated_key}, "keys of an example must be distinct"),
        ("mqar", 24, {**mq, "labels": early_query}, "must follow the pairs"),
        ("mqar", 24, {**mq, "labels": dropped_query}, "as many queries"),
    ]
    for name, length, arrays, match in cases:
        path = split_file(tmp_path / name, name, "train")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)
        with pytest.raises(ValueError, match=match):
            tasks.load(name, "train", tmp_path / name, cache_dir=tmp_path / "c",
                       max_length=length)


# ------------------------------------------------------------------ CLI and configs


def test_cli_generate_and_check(tmp_path, capsys):
    flags = {"selective_copy": ["--length", "40", "--n-data", "6"],
             "induction_heads": ["--length", "30"],
             "mqar": ["--length", "48", "--n-pairs", "5", "--power-a", "1"]}
    for name, extra in flags.items():
        rc = cli_main(["generate", name, "--out", str(tmp_path), "--n-train", "30", "--n-val",
                       "8", "--n-test", "8", "--seed", "4", *extra])
        assert rc == 0, capsys.readouterr().err
        assert capsys.readouterr().out.strip() == f"wrote {tmp_path / name}"
        length = int(extra[1])
        rc = cli_main(["check", name, "--data-dir", str(tmp_path), "--cache-dir",
                       str(tmp_path / "cache"), "--option", f"max_length={length}", "--json"])
        assert rc == 0
        report = json.loads(capsys.readouterr().out)
        assert report["meta"]["per_token"] is True
        assert report["meta"]["n_classes"] == report["meta"]["vocab_size"] == GENERATORS[name][2]
        train = report["splits"]["train"]
        assert [report["splits"][s]["examples"] for s in tasks.SPLITS] == [30, 8, 8]
        raw = read(tmp_path, name, "train")
        scored = raw["labels"] != IGNORE
        assert train["scored_per_example"]["max"] == scored.sum(1).max()
        counts = {str(t): int(n) for t, n in zip(*np.unique(raw["labels"][scored],
                                                            return_counts=True))}
        assert train["targets"] == counts and "classes" not in train
        assert train["majority_rate"] == round(max(counts.values()) / scored.sum(), 4)
        # the readable report too
        assert cli_main(["check", name, "--data-dir", str(tmp_path), "--cache-dir",
                         str(tmp_path / "cache"), "--option", f"max_length={length}"]) == 0
        assert "scored per example" in capsys.readouterr().out

    # the flags are the generator's arguments: the same files as a direct call
    direct = gen_mqar.generate(tmp_path / "direct", n_train=30, n_val=8, n_test=8, seed=4,
                               length=48, n_pairs=5, power_a=1.0)
    for split in tasks.SPLITS:
        assert (direct / f"{split}.npz").read_bytes() == \
            split_file(tmp_path, "mqar", split).read_bytes()
    rc = cli_main(["generate", "selective_copy", "--out", str(tmp_path), "--n-data", "0"])
    assert rc == 2 and "n_data" in capsys.readouterr().err
    rc = cli_main(["check", "selective_copy", "--data-dir", str(tmp_path), "--cache-dir",
                   str(tmp_path / "cache"), "--option", "max_length=39"])
    assert rc == 2 and "max_length" in capsys.readouterr().err


@pytest.mark.parametrize("name", GENERATORS)
def test_task_config_generates_and_loads(tmp_path, name):
    """``conf/task/<name>.yaml`` composes, its generator takes its arguments, the reader its
    options; data_dir and max_length follow the generated length, so a changed length never
    reads another length's files."""
    module, options, _ = GENERATORS[name]
    tiny = [f"task.generate.args.{k}={v}" for k, v in {**SIZES, **options}.items()]
    with initialize_config_dir(str(CONF), version_base=None):
        default = compose("config", [f"task={name}", "run_dir=x"])
        cfg = compose("config", [f"task={name}", "run_dir=x", *tiny])
    assert default.task.name == name and default.task.generate.generator == name
    args = OmegaConf.to_container(default.task.generate.args, resolve=True)
    assert set(args) <= set(inspect.signature(module.generate).parameters)
    signature = inspect.signature(module.generate).parameters
    assert all(args[k] == signature[k].default for k in args)  # the defaults, once
    assert default.task.options.max_length == args["length"]
    assert str(args["length"]) in default.task.data_dir
    t = cfg.task
    assert t.options.max_length == options["length"] and t.data_dir != default.task.data_dir
    data_dir = tmp_path / t.data_dir
    module.generate(data_dir, **OmegaConf.to_container(t.generate.args, resolve=True))
    split = tasks.load(name, "test", data_dir, cache_dir=tmp_path / "c",
                       **OmegaConf.to_container(t.options, resolve=True))
    assert len(split) == SIZES["n_test"] and split.meta.max_length == options["length"]
