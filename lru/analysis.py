"""Quantities the ablations plot and check: eigenvalues of layers, Proposition 3's state norm."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx


def layer_eigenvalues(model: nnx.Module) -> dict[str, np.ndarray]:
    """Eigenvalues of every recurrent layer in ``model``, keyed by the layer's path.

    A layer counts as recurrent when it has an ``eigenvalues()`` method (every rung of
    :class:`lru.layers.LRU` does). Values are ``(n,)`` complex numpy arrays, ready to plot in
    the complex plane.
    """
    found = {}
    for path, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Module) and callable(getattr(node, "eigenvalues", None)):
            found["/".join(map(str, path)) or "."] = np.asarray(node.eigenvalues())
    return found


def expected_state_norm(r_min: float, r_max: float, input_sq_norm: float | jax.Array) -> float:
    """Proposition 3: ``E||x||^2`` of a diagonal linear RNN on white-noise input.

    With eigenvalues uniform on the ring ``r_min <= |lambda| <= r_max`` (so ``|lambda|^2`` is
    uniform on ``[r_min^2, r_max^2]``) and i.i.d. inputs, the stationary state satisfies

        E||x||^2 = log((1 - r_min^2) / (1 - r_max^2)) / (r_max^2 - r_min^2) * E||B u||^2,

    which diverges as ``r_max -> 1``: the blow-up that gamma normalisation removes.

    Args:
      r_min, r_max: the ring, ``0 <= r_min < r_max < 1``.
      input_sq_norm: ``E||B u_t||^2`` for one step.
    """
    if not 0.0 <= r_min < r_max < 1.0:
        raise ValueError(f"expected_state_norm: need 0 <= r_min < r_max < 1; got {r_min}, {r_max}")
    lo, hi = r_min**2, r_max**2
    return float(np.log((1 - lo) / (1 - hi)) / (hi - lo) * np.asarray(input_sq_norm))
