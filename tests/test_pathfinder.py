"""Pathfinder / Path-X: the reader on the exact official layout, the generator's geometry and
labels, determinism, and the preprocessing cache."""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import tasks
from tasks import pathfinder as reader
from tasks.generate import pathfinder as gen

SPLITS = ("train", "val", "test")
HARD = "curv_contour_length_14"


# ----------------------------------------------------------------------------- helpers

def write_official(data_dir: Path, *, resolution: int = 32, difficulty: str = HARD,
                   per_folder: tuple[int, ...] = (12, 8), seed: int = 0) -> dict[bytes, int]:
    """A tiny data set in the official layout, written by hand: ``imgs/<k>/sample_<i>.png``
    (grey PNGs) and text ``metadata/<k>.npy`` files, plus one EMPTY (0-byte) PNG and one
    corrupt PNG, both listed. Returns {readable image bytes (row-major): label}."""
    rng = np.random.default_rng(seed)
    root = data_dir / f"pathfinder{resolution}" / difficulty
    (root / "metadata").mkdir(parents=True)
    written: dict[bytes, int] = {}
    for k, n in enumerate(per_folder):
        (root / "imgs" / str(k)).mkdir(parents=True)
        lines = []
        for i in range(n):
            pixels = rng.integers(0, 256, (resolution, resolution), dtype=np.uint8)
            label = int(rng.integers(2))
            Image.fromarray(pixels, "L").save(root / "imgs" / str(k) / f"sample_{i}.png")
            written[pixels.tobytes()] = label
            # As the release: imgs/<k> sample_<i>.png <i> <label> and more fields.
            lines.append(f"imgs/{k} sample_{i}.png {i} {label} 14 1.5 2\n")
        if k == 0:
            (root / "imgs/0/sample_empty.png").write_bytes(b"")
            (root / "imgs/0/sample_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 9)
            lines.insert(3, "imgs/0 sample_empty.png 98 1 14 1.5 2\n")
            lines.insert(7, "imgs/0 sample_corrupt.png 99 0 14 1.5 2\n")
        (root / "metadata" / f"{k}.npy").write_text("".join(lines) + "\n")
    return written


def skipped_warnings(records) -> list[str]:
    return [str(w.message) for w in records if "skipped" in str(w.message)]


def geometric_label(scene: gen.Scene, st: gen.Style) -> int:
    """The label implied by the drawn geometry alone: 1 iff some contour has one marker
    within the marker radius of its first vertex and the other within it of its last."""
    def near(p, q):
        return math.dist(p, q) <= st.marker_radius

    m0, m1 = scene.markers
    for c in scene.contours:
        if (near(m0, c[0]) and near(m1, c[-1])) or (near(m1, c[0]) and near(m0, c[-1])):
            return 1
    return 0


def contours_ending_at(scene: gen.Scene, marker, st: gen.Style) -> list[int]:
    return [i for i, c in enumerate(scene.contours)
            if min(math.dist(marker, c[0]), math.dist(marker, c[-1])) <= st.marker_radius]


def dense(v: np.ndarray, n: int = 16) -> np.ndarray:
    """Points along a polyline, ``n`` per edge."""
    t = np.linspace(0, 1, n, endpoint=False)[:, None]
    return np.concatenate([(v[:-1, None] + t * (v[1:] - v[:-1])[:, None]).reshape(-1, 2), v[-1:]])


def pixel(p) -> tuple[int, int]:
    """(row, column) of the pixel holding point (x, y)."""
    return int(p[1]), int(p[0])


# ----------------------------------------------------------------------------- reader

def test_official_layout_splits_pixels_labels_and_one_warning(tmp_path):
    written = write_official(tmp_path / "data")
    cache = tmp_path / "cache"
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        splits = {s: tasks.load("pathfinder", s, tmp_path / "data", cache_dir=cache)
                  for s in SPLITS}
    # 22 listed, 20 readable: 80/10/10 of those.
    assert {s: len(splits[s]) for s in SPLITS} == {"train": 16, "val": 2, "test": 2}
    messages = skipped_warnings(records)
    assert len(messages) == 1, messages
    assert "skipped 2 of 22" in messages[0] and "1 empty" in messages[0]
    assert "1 unreadable" in messages[0]

    seen: list[bytes] = []
    for s in SPLITS:
        sp = splits[s]
        assert sp.inputs.shape == (len(sp), 32 * 32, 1) and sp.inputs.dtype == np.uint8
        assert sp.lengths.dtype == np.int32 and (np.asarray(sp.lengths) == 1024).all()
        assert sp.labels.dtype == np.int32
        assert sp.meta.channels == 1 and sp.meta.n_classes == 2 and sp.meta.max_length == 1024
        for x, y in zip(np.asarray(sp.inputs), np.asarray(sp.labels)):
            key = x[:, 0].tobytes()  # row-major flattening of the written image
            assert key in written, "pixels differ from every image written"
            assert written[key] == y
            seen.append(key)
    assert len(seen) == len(set(seen)) == len(written)  # disjoint, union = all readable


def test_split_seed_changes_the_cut_not_the_union(tmp_path):
    write_official(tmp_path / "data", per_folder=(15, 15))
    cache = tmp_path / "cache"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = tasks.load("pathfinder", "test", tmp_path / "data", cache_dir=cache)
        b = tasks.load("pathfinder", "test", tmp_path / "data", cache_dir=cache, split_seed=1)
        union = [tasks.load("pathfinder", s, tmp_path / "data", cache_dir=cache, split_seed=1)
                 for s in SPLITS]
    assert len(a) == len(b) == 3
    assert not np.array_equal(np.asarray(a.inputs), np.asarray(b.inputs))
    assert sum(len(s) for s in union) == 30


def test_natural_order_of_metadata_files(tmp_path):
    meta = tmp_path / "pathfinder32" / HARD / "metadata"
    meta.mkdir(parents=True)
    for name in ("10.npy", "2.npy", "1.npy", "extra.npy"):
        (meta / name).write_text("")
    assert [p.name for p in reader.metadata_files(tmp_path, 32, HARD)] == [
        "1.npy", "2.npy", "10.npy", "extra.npy"]


def test_pathx_reads_pathfinder128(tmp_path):
    written = write_official(tmp_path, resolution=128, per_folder=(10,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train = tasks.load("pathx", "train", tmp_path, cache_dir=tmp_path / "cache")
    assert train.inputs.shape == (8, 128 * 128, 1) and train.meta.max_length == 16384
    assert all(np.asarray(x)[:, 0].tobytes() in written for x in train.inputs)
    with pytest.raises(tasks.DataNotFoundError) as err:  # nothing at 32
        tasks.load("pathfinder", "train", tmp_path, cache_dir=tmp_path / "cache")
    assert str(tmp_path / "pathfinder32" / HARD / "metadata") in str(err.value)


def test_resolution_option_reads_another_image_size(tmp_path):
    written = write_official(tmp_path, resolution=24, per_folder=(10,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train = tasks.load("pathfinder", "train", tmp_path, cache_dir=tmp_path / "cache",
                           resolution=24)
    assert train.inputs.shape == (8, 24 * 24, 1) and train.meta.max_length == 576
    assert train.meta.extra["resolution"] == 24
    assert all(np.asarray(x)[:, 0].tobytes() in written for x in train.inputs)
    with pytest.raises(tasks.DataNotFoundError) as err:  # the default side is still 32
        tasks.load("pathfinder", "train", tmp_path, cache_dir=tmp_path / "cache")
    assert str(tmp_path / "pathfinder32" / HARD / "metadata") in str(err.value)
    for bad in (0, "24", 2.5, True):
        with pytest.raises(ValueError, match="option resolution must be a positive"):
            tasks.load("pathfinder", "train", tmp_path, cache_dir=tmp_path / "cache",
                       resolution=bad)


def test_missing_folder_names_the_expected_path(tmp_path):
    (tmp_path / "pathfinder32").mkdir()
    for name, res, difficulty in (("pathfinder", 32, HARD), ("pathx", 128, HARD),
                                  ("path256", 256, "curv_baseline")):
        with pytest.raises(tasks.DataNotFoundError) as err:
            tasks.load(name, "train", tmp_path, cache_dir=tmp_path / "cache",
                       difficulty=difficulty)
        assert str(tmp_path / f"pathfinder{res}" / difficulty / "metadata") in str(err.value)
    # A metadata folder without metadata files.
    (tmp_path / "pathfinder32" / HARD / "metadata").mkdir(parents=True)
    with pytest.raises(tasks.DataNotFoundError, match=r"metadata/\*\.npy"):
        tasks.load("pathfinder", "val", tmp_path, cache_dir=tmp_path / "cache")


def test_bad_difficulty_lists_the_choices(tmp_path):
    with pytest.raises(ValueError) as err:
        tasks.load("pathfinder", "train", tmp_path, cache_dir=tmp_path / "cache",
                   difficulty="hard")
    for d in reader.DIFFICULTIES:
        assert d in str(err.value)


# ----------------------------------------------------------------------------- generator

@pytest.mark.parametrize("resolution,n_segments", [(32, 6), (32, 9), (32, 14), (64, 14),
                                                   (128, 14)])
def test_labels_follow_the_geometry(resolution, n_segments):
    st = gen.style(resolution)
    labels = gen.balanced_labels(40, seed=resolution + n_segments)
    scenes = gen.sample_scenes([gen.example_rng(5, g) for g in range(40)], resolution,
                               n_segments, labels)
    assert sorted(np.bincount([s.label for s in scenes])) == [20, 20]
    for scene, label in zip(scenes, labels):
        assert scene.label == label == geometric_label(scene, st)
        assert len(scene.contours[0]) == len(scene.contours[1]) == n_segments + 1
        on = [contours_ending_at(scene, m, st) for m in scene.markers]
        assert all(len(o) == 1 for o in on), on  # each marker ends exactly one contour
        if label:  # both markers on the two ends of one contour
            c = scene.contours[on[0][0]]
            assert on[0] == on[1]
            assert {math.dist(scene.markers[0], c[0]) <= st.marker_radius,
                    math.dist(scene.markers[0], c[-1]) <= st.marker_radius} == {True, False}
        else:  # on ends of two different contours
            assert on[0] != on[1]
        # Contours keep apart (to within the grid's precision), markers keep off the others.
        pts = [dense(c) for c in scene.contours]
        for i in range(len(pts)):
            for j in range(i + 1, len(pts)):
                d = np.sqrt(((pts[i][:, None] - pts[j][None]) ** 2).sum(-1)).min()
                assert d >= 0.75 * st.clearance
            for m, owner in zip(scene.markers, on):
                if i != owner[0]:
                    assert np.hypot(*(pts[i] - m).T).min() >= st.marker_radius + 0.75 * st.clearance


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_rendered_markers_connect_exactly_through_the_path(resolution):
    st = gen.style(resolution)
    scenes = gen.sample_scenes([gen.example_rng(9, g) for g in range(24)], resolution, 14,
                               gen.balanced_labels(24, 9))
    bridge = math.ceil(st.gap)  # dilation that closes the gaps between dashes
    for scene in scenes:
        full = gen.render(scene, resolution)
        assert full.shape == (resolution, resolution) and full.dtype == np.uint8
        assert all(full[pixel(m)] > 200 for m in scene.markers)
        alone = [gen.render(scene, resolution, contours=[i], markers=False)
                 for i in range(len(scene.contours))]
        assert (np.stack(alone) > 0).sum(0).max() <= 1  # no pixel lit by two contours
        path = contours_ending_at(scene, scene.markers[0], st)[0]
        if scene.label:
            lit = gen.render(scene, resolution, contours=[path]) > 0  # path contour + markers
            lit = ndimage.binary_dilation(lit, np.ones((3, 3)), iterations=bridge)
            comp, _ = ndimage.label(lit, np.ones((3, 3)))
            assert comp[pixel(scene.markers[0])] == comp[pixel(scene.markers[1])] != 0
        else:
            other = contours_ending_at(scene, scene.markers[1], st)[0]
            assert other != path
            assert alone[path][pixel(scene.markers[1])] == 0  # marker 1's contour misses 2
            assert alone[other][pixel(scene.markers[0])] == 0


@pytest.mark.parametrize("n_segments", [6, 14])
def test_marker_distance_says_little_about_the_label(n_segments):
    labels = gen.balanced_labels(300, 0)
    scenes = gen.sample_scenes([gen.example_rng(0, g) for g in range(300)], 32, n_segments,
                               labels)
    dist = np.array([math.dist(*s.markers) for s in scenes])
    order = np.argsort(dist)
    y = labels[order]
    # Accuracy of the best rule "label 1 iff distance > t" (or < t), over all t.
    right = np.concatenate([[0], np.cumsum(1 - y)]) + y.sum() - np.concatenate([[0], np.cumsum(y)])
    best = max(right.max(), len(y) - right.min()) / len(y)
    assert best <= 0.65, best  # ~0.70-0.74 without matching the distances


def test_batched_and_single_sampling_agree():
    labels = gen.balanced_labels(12, 1)
    batch = gen.sample_scenes([gen.example_rng(2, g) for g in range(12)], 32, 9, labels)
    for g, scene in enumerate(batch):
        single = gen.sample_scene(gen.example_rng(2, g), 32, 9, label=int(labels[g]))
        assert len(single.contours) == len(scene.contours)
        assert all(np.array_equal(a, b) for a, b in zip(single.contours, scene.contours))


def test_balanced_labels():
    for n in (1, 10, 11, 1000):
        labels = gen.balanced_labels(n, 3)
        assert labels.sum() == n // 2 and len(labels) == n
    assert not np.array_equal(gen.balanced_labels(100, 3), gen.balanced_labels(100, 4))


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_generate_layout_determinism_and_labels(tmp_path):
    kw = dict(n_examples=60, resolution=32, difficulty="curv_contour_length_9",
              images_per_folder=25)
    a = gen.generate(tmp_path / "a", seed=3, workers=2, **kw)
    b = gen.generate(tmp_path / "b", seed=3, workers=1, **kw)
    c = gen.generate(tmp_path / "c", seed=4, workers=2, **kw)
    assert a == tmp_path / "a" / "pathfinder32" / "curv_contour_length_9"
    ta, tb, tc = _tree(a), _tree(b), _tree(c)
    assert ta == tb  # same seed: the same bytes, whatever the number of processes
    assert ta.keys() == tc.keys() and ta != tc
    assert sorted(p for p in ta if p.startswith("metadata")) == [
        "metadata/0.npy", "metadata/1.npy", "metadata/2.npy"]
    assert len([p for p in ta if p.startswith("imgs/0/")]) == 25
    assert not any(p.name.startswith(".") for p in (tmp_path / "a" / "pathfinder32").iterdir())

    st = gen.style(32)
    labels, g = [], 0
    for k in range(3):
        for line in (a / "metadata" / f"{k}.npy").read_text().splitlines():
            folder, name, index, label, n_seg = line.split()
            assert (folder, name) == (f"imgs/{k}", f"sample_{index}.png") and n_seg == "9"
            with Image.open(a / folder / name) as im:
                assert im.mode == "L" and im.size == (32, 32)
                pixels = np.asarray(im)
            # The scene this image was drawn from: its rendering is the PNG, and its
            # geometry (not the label field) gives the label.
            scene = gen.sample_scene(gen.example_rng(3, g), 32, 9, label=int(label))
            assert np.array_equal(gen.render(scene, 32), pixels)
            assert geometric_label(scene, st) == int(label)
            labels.append(int(label))
            g += 1
    assert g == 60 and sum(labels) == 30

    with pytest.raises(FileExistsError):
        gen.generate(tmp_path / "a", seed=3, **kw)


# ----------------------------------------------------------------------------- cache

@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    data = tmp_path_factory.mktemp("pf_data")
    gen.generate(data, n_examples=2400, resolution=32, seed=0)  # the default difficulty
    gen.generate(data, n_examples=100, resolution=32, difficulty="curv_baseline", seed=1)
    return data


def test_generated_set_loads_with_its_labels(generated, tmp_path):
    root = generated / "pathfinder32" / HARD
    by_pixels = {}
    for meta in sorted((root / "metadata").glob("*.npy")):
        for line in meta.read_text().splitlines():
            fields = line.split()
            with Image.open(root / fields[0] / fields[1]) as im:
                by_pixels[np.asarray(im).tobytes()] = int(fields[3])
    assert len(by_pixels) == 2400 and sum(by_pixels.values()) == 1200
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        splits = [tasks.load("pathfinder", s, generated, cache_dir=tmp_path / "cache")
                  for s in SPLITS]
    assert not skipped_warnings(records)
    assert [len(s) for s in splits] == [1920, 240, 240]
    keys = [x[:, 0].tobytes() for s in splits for x in np.asarray(s.inputs)]
    assert set(keys) == set(by_pixels)
    labels = np.concatenate([np.asarray(s.labels) for s in splits])
    assert [by_pixels[k] for k in keys] == labels.tolist()


def test_cache_second_load_is_fast_equal_and_memory_mapped(generated, tmp_path):
    cache = tmp_path / "cache"
    reader._READABLE.clear()  # a cold first build: no in-process memory of earlier scans
    t0 = time.perf_counter()
    first = tasks.load("pathfinder", "train", generated, cache_dir=cache)
    t1 = time.perf_counter()
    second = tasks.load("pathfinder", "train", generated, cache_dir=cache)
    t2 = time.perf_counter()
    speedup = (t1 - t0) / (t2 - t1)
    print(f"pathfinder cache: first load {t1 - t0:.3f} s, second {t2 - t1:.4f} s, "
          f"{speedup:.0f}x")
    assert speedup >= 10
    assert isinstance(second.inputs, np.memmap)
    for name, arr in first.arrays().items():
        assert np.array_equal(arr, second.arrays()[name])
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 1 and entries[0].startswith("pathfinder-train-")

    # A changed option is a different entry with different arrays.
    reseeded = tasks.load("pathfinder", "train", generated, cache_dir=cache, split_seed=7)
    assert len(list(cache.iterdir())) == 2
    assert not np.array_equal(np.asarray(reseeded.labels), np.asarray(first.labels)) or \
        not np.array_equal(np.asarray(reseeded.inputs), np.asarray(first.inputs))
    easy = tasks.load("pathfinder", "train", generated, cache_dir=cache,
                      difficulty="curv_baseline")
    assert len(list(cache.iterdir())) == 3 and len(easy) == 80
    assert easy.meta.extra["difficulty"] == "curv_baseline"
