"""Pathfinder generator: Linsley et al. (2018)-style images in the official LRA layout.

Each image (``res x res``, black background) holds two long *target* contours of
``n_segments`` dashes each, up to ``20 // (n_segments // 3)`` short *distractor* contours of
``n_segments // 3`` dashes (LRA's Pathfinder-32 settings; one fewer wherever one does not
fit), and two white marker discs. A contour is a random walk of fixed step whose heading
turns by at most 45 degrees a step, drawn as one antialiased dash a step with a gap between
dashes. Contours keep a clearance from each other, from themselves and from the markers, so
they never touch or cross.

Label 1 (connected): the markers sit on both ends of the first target contour. Label 0: they
sit on one end of each of the two target contours (as in Linsley et al.), so both classes
show the same parts -- two long contours, the same distractors, each marker at the end of a
long contour -- and differ only in whether one contour joins the markers. In label 0 the
second marker goes to an end of the second contour whose distance to the first marker is
within half a step of the first contour's own end-to-end length, i.e. of what the distance
between the markers would be in label 1; without this the distance between the markers
alone would predict the label 70-74% of the time (best threshold, at 32 px), with it 54-58%.

``n_segments`` is 6, 9 or 14 for ``curv_baseline``, ``curv_contour_length_9`` and
``curv_contour_length_14``. Lengths, widths and radii scale with the resolution (Path-X:
128), so a contour spans a similar share of the image at every size. :func:`sample_scene`
returns the geometry (contours as polylines, marker centres, label) and :func:`render` draws
it, so tests can check labels against the geometry.

Everything is deterministic by seed: example ``g`` draws from ``SeedSequence(seed,
spawn_key=(1, g))`` (scenes are drawn in vectorised batches, but what a scene gets depends
only on its own generator), and the classes are a shuffled balanced list, so the bytes
written do not depend on the number of worker processes.

Layout written (what :mod:`tasks.pathfinder` reads)::

    <out_dir>/pathfinder<res>/<difficulty>/imgs/<k>/sample_<i>.png
    <out_dir>/pathfinder<res>/<difficulty>/metadata/<k>.npy   # text lines:
        imgs/<k> sample_<i>.png <i> <label> <n_segments>
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import math
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from tasks.pathfinder import (DEFAULT_DIFFICULTY, check_difficulty, default_workers, folder,
                              pool_context)

#: Dashes per target contour, by difficulty.
SEGMENTS: dict[str, int] = {"curv_baseline": 6, "curv_contour_length_9": 9,
                            "curv_contour_length_14": 14}
#: Distractor dashes per image (LRA Pathfinder-32: ``20 // distractor_length`` distractors).
DISTRACTOR_BUDGET = 20
#: Candidate headings per step.
_CANDIDATES = 8
#: Fresh walks per target contour (then the scene restarts) and per distractor (then the
#: image has one distractor fewer); scene restarts.
_TARGET_ATTEMPTS = 8
_DISTRACTOR_ATTEMPTS = 2
#: Walks side by side per scene after a first failed one.
_WALKS_PER_RETRY = 4
_SCENE_ATTEMPTS = 100
#: Random points tried per walk for a free starting point.
_SEED_TRIES = 16


@dataclasses.dataclass(frozen=True)
class Style:
    """Geometry of one resolution, in pixels (continuous coordinates ``(x, y)``; pixel
    ``(row i, column j)`` covers ``[j, j + 1) x [i, i + 1)``).

    Attributes:
      resolution: image side.
      step: distance between consecutive contour vertices (one dash plus one gap).
      dash: drawn length of a dash; the gap ``step - dash`` is split over its two ends.
      thickness: dash width.
      marker_radius: radius of the marker discs.
      clearance: least distance between the centre lines of different contours (and of
        non-adjacent parts of one contour); marker centres keep ``marker_radius +
        clearance`` from other centre lines. Enforced on a grid of ``clearance / 6`` cells,
        so it holds to within about a cell.
      max_turn: largest heading change per step, radians.
      margin: vertices stay this far inside the image.
    """

    resolution: int
    step: float
    dash: float
    thickness: float
    marker_radius: float
    clearance: float
    max_turn: float
    margin: float

    @property
    def gap(self) -> float:
        return self.step - self.dash


def style(resolution: int) -> Style:
    """The :class:`Style` of ``resolution`` (32: 3 px steps, 2 px dashes, 1.5 px markers)."""
    if resolution < 16:
        raise ValueError(f"resolution must be at least 16, got {resolution}")
    s = resolution / 32
    return Style(resolution=resolution, step=3.0 * s, dash=2.0 * s, thickness=max(1.0, s ** 0.5),
                 marker_radius=1.5 * s ** 0.55, clearance=2.5 * s, max_turn=math.radians(45),
                 margin=1.0 * s)


@dataclasses.dataclass(frozen=True)
class Scene:
    """One image's geometry.

    Attributes:
      contours: ``(n_dashes + 1, 2)`` float vertex arrays ``(x, y)``; dash ``k`` is drawn
        along the edge from vertex ``k`` to ``k + 1``. ``contours[0]`` and ``contours[1]``
        are the two target contours, the rest distractors.
      markers: ``(2, 2)`` marker centres, each exactly on a target contour's end vertex.
      label: 1 when one contour joins the markers, else 0.
      marker_contours: index (into ``contours``) of the contour each marker ends.
    """

    contours: tuple[np.ndarray, ...]
    markers: np.ndarray
    label: int
    marker_contours: tuple[int, int]


class _Grids:
    """Keep-out rasters of a batch of scenes on a fine grid (cell = clearance / 6).

    Row ``i`` of ``blocked`` marks where a centre line of scene ``i`` may not go (near its
    contours and markers, and outside ``[margin, res - margin]``); ``blocked_marker`` marks
    where a marker centre may not go (the same keep-outs grown by the marker radius, and
    outside ``[marker_radius + 0.5, res - marker_radius - 0.5]``). Cells are flattened; a
    border of blocked cells wide enough for any stamp or query saves bounds checks. A cell is
    marked when its centre is within the keep-out radius of a stamped point's cell centre.
    """

    def __init__(self, st: Style, n: int):
        self.st = st
        self.cell = st.clearance / 6
        self.r_keep = st.marker_radius + st.clearance
        self.pad = math.ceil(max(self.r_keep + st.marker_radius, st.step) / self.cell) + 2
        self.width = math.ceil(st.resolution / self.cell) + 2 * self.pad
        border, border_marker = _border_template(st, self.cell, self.pad, self.width)
        self.blocked = np.repeat(border[None], n, 0)
        self.blocked_marker = np.repeat(border_marker[None], n, 0)

    def flat_index(self, pts: np.ndarray) -> np.ndarray:
        c = (pts * (1 / self.cell) + self.pad).astype(np.intp)  # >= 0, so this floors
        return c[..., 1] * self.width + c[..., 0]

    def stamp(self, grid: np.ndarray, rows: np.ndarray, pts: np.ndarray, radius: float) -> None:
        """Mark, in row ``rows[i]`` of ``grid``, the cells within ``radius`` of ``pts[i]``
        ``(R, P, 2)``."""
        off = _disc_offsets(round(radius / self.cell, 6), self.width)
        base = self.flat_index(pts) + (np.asarray(rows) * grid.shape[1])[:, None]  # (R, P)
        grid.reshape(-1)[(base[:, :, None] + off).ravel()] = True

    def add_contours(self, rows: np.ndarray, samples: np.ndarray) -> None:
        self.stamp(self.blocked, rows, samples, self.st.clearance)
        self.stamp(self.blocked_marker, rows, samples, self.st.clearance + self.st.marker_radius)

    def add_markers(self, rows: np.ndarray, centres: np.ndarray) -> None:
        self.stamp(self.blocked, rows, centres[:, None], self.r_keep)
        self.stamp(self.blocked_marker, rows, centres[:, None], self.r_keep + self.st.marker_radius)


@functools.lru_cache(maxsize=None)
def _border_template(st: Style, cell: float, pad: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    centres = (np.arange(width) - pad + 0.5) * cell
    out = []
    for lo in (st.margin, st.marker_radius + 0.5):
        outside = (centres < lo) | (centres > st.resolution - lo)
        out.append((outside[:, None] | outside[None, :]).ravel())
    return out[0], out[1]


@functools.lru_cache(maxsize=None)
def _disc_offsets(radius_cells: float, width: int) -> np.ndarray:
    """Flat offsets of the cells whose centres lie within ``radius_cells`` of a cell centre."""
    r = math.ceil(radius_cells)
    dx, dy = np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1))
    inside = dx ** 2 + dy ** 2 <= radius_cells ** 2
    return (dy[inside] * width + dx[inside]).astype(np.intp)


def _edge_samples(verts: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre-line samples of polylines ``(..., V, 2)``: the first vertex, then ``ts`` along
    each edge; and their arc positions in units of edges."""
    d = verts[..., 1:, :] - verts[..., :-1, :]
    pts = verts[..., :-1, None, :] + ts[:, None] * d[..., None, :]
    pts = pts.reshape(*verts.shape[:-2], -1, 2)
    arcs = (np.arange(d.shape[-2])[:, None] + ts).ravel()
    return np.concatenate([verts[..., :1, :], pts], -2), np.concatenate([[0.0], arcs])


def _walks(rngs: Sequence[np.random.Generator], st: Style, grids: _Grids, rows: np.ndarray,
           n_dashes: int, mark_start: np.ndarray, mark_end: np.ndarray, attempts: int,
           end_distance: np.ndarray | None = None) -> list[np.ndarray | None]:
    """One contour for each scene ``rows[i]`` (drawing from ``rngs[i]``): its vertices
    ``(n_dashes + 1, 2)``, clear of the scene's grid, or None after ``attempts`` walks.
    ``end_distance[i] = (x, y, t)``: vertex 0 or vertex ``n`` must lie ``t +- step / 2``
    from ``(x, y)`` (no condition where ``t`` is NaN).

    A walk starts at a random free point and grows two halves in opposite directions (the
    first ``ceil(n / 2)`` edges, ending at vertex 0, then the rest, ending at vertex ``n``),
    so that long contours fit the image. Each step tries ``_CANDIDATES`` headings within
    ``max_turn`` of the last one (random ones, then the two sharpest) and takes the first
    that is clear of the grid and of the walk's own earlier edges (except the adjacent one)
    and -- unless it ends its half -- leaves room to circle at the sharpest turn without
    leaving the image. A marked end (``mark_start[i]``: vertex 0, ``mark_end[i]``: vertex
    ``n``) must keep ``marker_radius + clearance`` from everything else, and two marked ends
    ``2 * marker_radius + clearance`` from each other.

    The scenes' walks run in lock step (vectorised); what scene ``i`` gets depends only on
    its grid and ``rngs[i]``.
    """
    if n_dashes < 2 and (np.any(mark_start) or np.any(mark_end)):
        raise ValueError("a marked contour needs at least 2 dashes")
    out: list[np.ndarray | None] = [None] * len(rows)
    todo = np.arange(len(rows))
    for attempt in range(attempts):
        if not len(todo):
            break
        w = 1 if attempt == 0 else _WALKS_PER_RETRY  # walks per scene this round
        rep = np.repeat(todo, w)
        verts, ok = _walk_once([rngs[i] for i in rep], st, grids, np.asarray(rows)[rep],
                               n_dashes, np.asarray(mark_start)[rep], np.asarray(mark_end)[rep],
                               None if end_distance is None else end_distance[rep])
        ok = ok.reshape(len(todo), w)
        done = ok.any(-1)
        first = np.argmax(ok, -1)
        for j in np.flatnonzero(done):
            out[todo[j]] = verts[j * w + first[j]]
        todo = todo[~done]
    return out


def _walk_once(rngs, st: Style, grids: _Grids, rows: np.ndarray, n_dashes: int,
               mark_start: np.ndarray, mark_end: np.ndarray,
               end_distance: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """One walk per scene (see :func:`_walks`): ``(vertices (R, n + 1, 2), succeeded (R,))``."""
    n_rows, n_cand = len(rows), _CANDIDATES
    r_keep = grids.r_keep
    n_sub = max(2, math.ceil(st.step / (st.clearance / 2.5)))  # queried points per edge
    ts = np.arange(1, n_sub + 1) / n_sub
    offsets = (ts * st.step)[:, None]
    lo, hi = st.margin, st.resolution - st.margin
    n_first = (n_dashes + 1) // 2
    radius = 1.1 * st.step / (2 * math.sin(st.max_turn / 2))  # of the sharpest walk
    sides = np.array([1.0, -1.0])[:, None, None, None] * (-radius, radius)
    local_rows = np.arange(n_rows)

    def can_circle(pts: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        # Centres of the two sharpest circles through pts, tangent to dirs: (2, R, K, 2).
        centres = pts + dirs[..., ::-1] * sides
        return ((centres >= lo + radius) & (centres <= hi - radius)).all(-1).any(0)

    # Each scene's draws: candidate seeds (the first free one is used) and the turns.
    draws = [(rng.random((_SEED_TRIES, 2)),
              rng.uniform(-st.max_turn, st.max_turn, (n_dashes, n_cand))) for rng in rngs]
    seeds_all = lo + np.stack([d[0] for d in draws]) * (hi - lo)  # (R, T, 2)
    turns = np.stack([d[1] for d in draws], 1)  # (n, R, K)
    turns[..., -2:] = (-st.max_turn, st.max_turn)
    local = grids.blocked[rows]  # a copy
    cells = local.shape[1]
    local_flat = local.reshape(-1)
    row_base = local_rows * cells
    seed_free = ~local_flat[grids.flat_index(seeds_all) + row_base[:, None]]
    alive = seed_free.any(-1)
    seeds = seeds_all[local_rows, np.argmax(seed_free, -1)]
    halves = [[seeds], [seeds]]  # lists of (R, 2) vertices
    edges: dict[tuple[int, int], np.ndarray] = {}  # (half, k) -> (R, S', 2), unstamped
    for step in range(n_dashes):
        half, k = (0, step) if step < n_first else (1, step - n_first)
        # Stamp every earlier edge but the adjacent one; the first half's first edge
        # stays unstamped until the second half's first edge (also at the seed) is placed.
        adjacent = (half, k - 1) if k else (0, 0)
        stamp = [edges.pop(key) for key in list(edges)
                 if key != adjacent and (half or key != (0, 0))]
        if half == 1 and k == 0 and mark_start.any():
            marked = np.flatnonzero(mark_start)
            grids.stamp(local, marked, halves[0][-1][marked, None], r_keep)
        if stamp:
            live = np.flatnonzero(alive)
            grids.stamp(local, live, np.concatenate(stamp, 1)[live], st.clearance)
        v = halves[half]
        if step == 0:  # the first edge may go any way
            heads = turns[0] * (math.pi / st.max_turn)
        else:
            d = v[-1] - v[-2] if k else seeds - halves[0][1]  # half 1 leaves the seed
            heads = np.arctan2(d[:, 1], d[:, 0])[:, None] + turns[step]  # the other way
        dirs = np.exp(1j * heads).view(np.float64).reshape(n_rows, n_cand, 2)
        q = v[-1][:, None, None, :] + offsets * dirs[:, :, None, :]  # (R, K, S, 2)
        ends = q[:, :, -1]
        # Clear of the grid (whose border also keeps the walk in [margin, res - margin]).
        ok = ~local_flat[grids.flat_index(q) + row_base[:, None, None]].any(-1) & alive[:, None]
        last = k == (n_first if half == 0 else n_dashes - n_first) - 1
        if not last:
            ok &= can_circle(ends, dirs)
        if step == 0 and n_dashes > n_first:  # half 1 will leave the seed the other way
            ok &= can_circle(seeds[:, None, :], -dirs)
        if last and end_distance is not None:
            anchor, t = end_distance[:, None, :2], end_distance[:, None, 2]
            near = np.abs(np.hypot(*np.moveaxis(ends - anchor, -1, 0)) - t) <= st.step / 2
            if half == 0:
                near_start = near  # whether vertex 0 would do; decided below
            else:
                ok &= np.isnan(t) | near_start_picked[:, None] | near
        marked = mark_start if half == 0 else mark_end
        if last and marked.any():
            path = halves[0] if half == 0 else halves[0][::-1] + halves[1][1:]
            fits = np.ones(ok.shape, bool)
            fits[marked] = _marker_fits(grids, st, rows[marked], np.stack(path, 1)[marked],
                                        ends[marked])
            if half == 1:
                gap = np.hypot(*np.moveaxis(ends - halves[0][-1][:, None], -1, 0))
                fits &= ~mark_start[:, None] | (gap >= 2 * st.marker_radius + st.clearance)
            ok &= fits | ~marked[:, None]
        alive = ok.any(-1)
        if not alive.any():
            break
        pick = np.argmax(ok, -1)
        if last and half == 0 and end_distance is not None:
            near_start_picked = near_start[local_rows, pick]
        # Dead walks stay where they are (so that their points stay on the grid).
        v.append(np.where(alive[:, None], ends[local_rows, pick], v[-1]))
        # Stamped: the edge's midpoint and end (with the previous edge's end, half a step
        # apart), which covers the edge to within 0.12 px of the clearance at 32 px.
        edges[(half, k)] = np.stack([(v[-2] + v[-1]) / 2, v[-1]], 1)
    else:
        return np.stack(halves[0][::-1] + halves[1][1:], 1), alive
    return np.zeros((n_rows, n_dashes + 1, 2)), np.zeros(n_rows, bool)


def _marker_fits(grids: _Grids, st: Style, rows: np.ndarray, path: np.ndarray,
                 ends: np.ndarray) -> np.ndarray:
    """For candidate final vertices ``ends`` ``(R, K, 2)`` extending ``path`` ``(R, P, 2)``
    (whose last vertex is the tip): whether a marker fits there -- inside the image, clear of
    the scene's other contours and markers, and ``marker_radius + clearance`` from the path
    farther than that along it (checked at vertices and edge midpoints)."""
    r_keep = grids.r_keep
    cells = grids.blocked_marker.shape[1]
    ok = ~grids.blocked_marker.reshape(-1)[grids.flat_index(ends)
                                           + (np.asarray(rows) * cells)[:, None]]
    pts, arcs = _edge_samples(path[:, ::-1], np.array([0.5, 1.0]))  # from the tip backwards
    far = pts[:, (arcs + 1) * st.step > r_keep]  # (R, F, 2)
    if far.shape[1]:
        ok &= (((ends[:, :, None, :] - far[:, None]) ** 2).sum(-1) >= r_keep ** 2).all(-1)
    return ok


def sample_scenes(rngs: Sequence[np.random.Generator], resolution: int, n_segments: int,
                  labels: Sequence[int | None]) -> list[Scene]:
    """One random :class:`Scene` per generator, drawn side by side (vectorised); scene ``i``
    depends only on ``rngs[i]`` and ``labels[i]`` (0/1, or None: drawn from ``rngs[i]``).

    Order per scene: target A (marked at vertex 0, and at its last vertex for label 1),
    target B (marked at vertex 0 for label 0), then the distractors (where one does not fit,
    the image has one fewer). A scene whose targets do not fit starts over.

    Raises RuntimeError if a scene finds no layout in many attempts (not seen at the LRA
    settings).
    """
    st = style(resolution)
    if n_segments < 2:
        raise ValueError(f"n_segments must be at least 2, got {n_segments}")
    labels = [int(rng.integers(2)) if lab is None else lab for rng, lab in zip(rngs, labels)]
    if any(lab not in (0, 1) for lab in labels):
        raise ValueError(f"labels must be 0 or 1, got {sorted(set(labels))}")
    lab = np.array(labels, bool)
    d_len = max(1, n_segments // 3)
    n_distractors = DISTRACTOR_BUDGET // d_len
    stamp_ts = np.linspace(0, 1, max(2, math.ceil(st.step / (st.clearance / 2))) + 1)[1:]
    scenes: list[Scene | None] = [None] * len(rngs)
    todo = np.arange(len(rngs))
    for _ in range(_SCENE_ATTEMPTS):
        if not len(todo):
            return scenes
        grids = _Grids(st, len(todo))
        rows = np.arange(len(todo))
        sub_rngs = [rngs[i] for i in todo]
        a = _walks(sub_rngs, st, grids, rows, n_segments, np.ones(len(todo), bool), lab[todo],
                   _TARGET_ATTEMPTS)
        rows = np.array([r for r in rows if a[r] is not None], np.intp)
        if len(rows):
            va = np.stack([a[r] for r in rows])
            grids.add_contours(rows, _edge_samples(va, stamp_ts)[0])
            grids.add_markers(rows, va[:, 0])
            pos = lab[todo[rows]]
            if pos.any():
                grids.add_markers(rows[pos], va[pos, -1])
            # Label 0: B takes the marker at an end that lies within half a step of A's own
            # end-to-end distance from A's marker -- a draw of the distance between the
            # markers in label 1, where they end one such contour -- so that the distance
            # between the markers says little about the label. Both ends of B must have
            # room for a marker; the one used becomes vertex 0.
            target = np.hypot(*(va[:, -1] - va[:, 0]).T)
            target[pos] = np.nan
            b = _walks([sub_rngs[r] for r in rows], st, grids, rows, n_segments, ~pos, ~pos,
                       _TARGET_ATTEMPTS,
                       end_distance=np.concatenate([va[:, 0], target[:, None]], 1))
            keep = np.array([x is not None for x in b], bool)
            rows, pos, va, target = rows[keep], pos[keep], va[keep], target[keep]
            b = [x for x in b if x is not None]
        if len(rows):
            vb = np.stack(b)
            err0 = np.abs(np.hypot(*(vb[:, 0] - va[:, 0]).T) - target)
            flip = ~pos & ~(err0 <= st.step / 2)
            vb[flip] = vb[flip, ::-1]
            grids.add_contours(rows, _edge_samples(vb, stamp_ts)[0])
            if (~pos).any():
                grids.add_markers(rows[~pos], vb[~pos, 0])
            distractors: list[list[np.ndarray]] = [[] for _ in rows]
            for _ in range(n_distractors):
                none = np.zeros(len(rows), bool)
                d = _walks([sub_rngs[r] for r in rows], st, grids, rows, d_len, none, none,
                           _DISTRACTOR_ATTEMPTS)
                placed = np.array([x is not None for x in d], bool)
                if placed.any():
                    vd = np.stack([x for x in d if x is not None])
                    grids.add_contours(rows[placed], _edge_samples(vd, stamp_ts)[0])
                    for j in np.flatnonzero(placed):
                        distractors[j].append(d[j])
            for j, r in enumerate(rows):
                a_, b_ = a[r], vb[j]
                if pos[j]:
                    markers, which = np.stack([a_[0], a_[-1]]), (0, 0)
                else:
                    markers, which = np.stack([a_[0], b_[0]]), (0, 1)
                scenes[todo[r]] = Scene(contours=(a_, b_, *distractors[j]), markers=markers,
                                        label=int(pos[j]), marker_contours=which)
        todo = np.array([i for i in todo if scenes[i] is None], np.intp)
    if len(todo):
        raise RuntimeError(f"no pathfinder layout found at resolution {resolution} with "
                           f"{n_segments} segments after {_SCENE_ATTEMPTS} attempts")
    return scenes


def sample_scene(rng: np.random.Generator, resolution: int, n_segments: int,
                 label: int | None = None) -> Scene:
    """A random :class:`Scene` (see :func:`sample_scenes`); ``label`` 0/1, or None to draw
    it from ``rng``."""
    return sample_scenes([rng], resolution, n_segments, [label])[0]


def render(scene: Scene, resolution: int, *, contours: Sequence[int] | None = None,
           markers: bool = True, supersample: int | None = None) -> np.ndarray:
    """The ``(res, res)`` uint8 image of ``scene`` (white on black, antialiased).

    ``contours`` selects which contours to draw (all by default); ``markers`` whether to draw
    the marker discs. Drawn at ``supersample`` times the size (4 up to 64 px, else 2) and
    box-filtered down.
    """
    st = style(resolution)
    f = supersample or (4 if resolution <= 64 else 2)
    canvas = Image.new("L", (resolution * f, resolution * f), 0)
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(st.thickness * f))
    chosen = range(len(scene.contours)) if contours is None else contours
    for c in chosen:
        v = np.asarray(scene.contours[c], float)
        d = v[1:] - v[:-1]
        u = d / np.linalg.norm(d, axis=-1, keepdims=True)
        a = (v[:-1] + u * st.gap / 2) * f - 0.5
        b = (v[1:] - u * st.gap / 2) * f - 0.5
        for p, q in zip(a.tolist(), b.tolist()):
            draw.line([tuple(p), tuple(q)], fill=255, width=width)
    if markers:
        r = st.marker_radius * f
        for cx, cy in (np.asarray(scene.markers) * f - 0.5).tolist():
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    return np.asarray(canvas.resize((resolution, resolution), Image.Resampling.BOX), np.uint8)


def example_rng(seed: int, index: int) -> np.random.Generator:
    """The generator example ``index`` of a data set with ``seed`` draws from."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, index)))


def balanced_labels(n: int, seed: int) -> np.ndarray:
    """``n`` labels, ``n // 2`` ones, shuffled by ``seed``."""
    labels = (np.arange(n) % 2).astype(np.int32)
    np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,))).shuffle(labels)
    return labels


def _generate_unit(args: tuple) -> list[str]:
    root, batch, first, offset, labels, resolution, n_segments, seed = args
    img_dir = Path(root) / "imgs" / str(batch)
    img_dir.mkdir(parents=True, exist_ok=True)
    rngs = [example_rng(seed, first + j) for j in range(len(labels))]
    lines = []
    for j, scene in enumerate(sample_scenes(rngs, resolution, n_segments, labels)):
        i = offset + j
        Image.fromarray(render(scene, resolution), "L").save(img_dir / f"sample_{i}.png",
                                                              format="PNG")
        lines.append(f"imgs/{batch} sample_{i}.png {i} {scene.label} {n_segments}\n")
    return lines


def generate(out_dir: str | Path, *, n_examples: int, resolution: int = 32,
             difficulty: str = DEFAULT_DIFFICULTY, seed: int = 0, workers: int | None = None,
             images_per_folder: int = 1000) -> Path:
    """Write ``n_examples`` images and their metadata; returns the difficulty folder.

    Writes ``<out_dir>/pathfinder<resolution>/<difficulty>/`` (see the module docstring),
    first into a temporary sibling folder that is renamed into place when complete. Refuses
    (FileExistsError) to replace a non-empty folder.

    Args:
      out_dir: the folder to write ``pathfinder<resolution>/`` into (a ``data_dir``).
      n_examples: images in all; classes balanced (``n_examples // 2`` positives).
      resolution: image side (LRA: 32 for Pathfinder, 128 for Path-X, 256 for Path-256).
      difficulty: one of :data:`tasks.pathfinder.DIFFICULTIES`.
      seed: non-negative; the same seed writes the same bytes.
      workers: processes (default: all usable CPUs).
      images_per_folder: images per ``imgs/<k>`` folder and ``metadata/<k>.npy`` file.
    """
    check_difficulty(difficulty)
    n_segments = SEGMENTS[difficulty]
    style(resolution)
    if n_examples < 1:
        raise ValueError(f"n_examples must be positive, got {n_examples}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    target = folder(Path(out_dir).expanduser(), resolution, difficulty)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not empty; remove it or choose another "
                              f"output folder")
    workers = default_workers() if workers is None else max(1, int(workers))
    labels = balanced_labels(n_examples, seed).tolist()

    tmp = target.parent / f".{difficulty}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "metadata").mkdir(parents=True)
    # Work units: slices of one folder, about 4 per worker, 16..500 images.
    unit = max(16, min(500, math.ceil(n_examples / (4 * workers))))
    units = []
    for first_in_batch in range(0, n_examples, images_per_folder):
        batch = first_in_batch // images_per_folder
        size = min(images_per_folder, n_examples - first_in_batch)
        for off in range(0, size, unit):
            first = first_in_batch + off
            count = min(unit, size - off)
            units.append((str(tmp), batch, first, off, labels[first:first + count], resolution,
                          n_segments, seed))
    try:
        lines: dict[int, list[str]] = {}
        with tqdm(total=n_examples, desc=f"generate pathfinder{resolution}/{difficulty}",
                  unit="img", leave=False, dynamic_ncols=True) as bar:
            executor = None
            if workers > 1 and len(units) > 1:
                executor = concurrent.futures.ProcessPoolExecutor(
                    max_workers=min(workers, len(units)), mp_context=pool_context())
                results = executor.map(_generate_unit, units)
            else:
                results = map(_generate_unit, units)
            try:
                for u, unit_lines in zip(units, results):
                    lines.setdefault(u[1], []).extend(unit_lines)
                    bar.update(len(unit_lines))
            finally:
                if executor is not None:
                    executor.shutdown(cancel_futures=True)
        for batch, batch_lines in lines.items():
            (tmp / "metadata" / f"{batch}.npy").write_text("".join(batch_lines))
        if target.exists():
            target.rmdir()  # empty (checked above)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
