"""Quantities the ablations plot and check: eigenvalues of layers, Proposition 3's state
norm, and the hidden-state norms a model's recurrent layers reach on real inputs."""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
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


def layer_state_norms(model: nnx.Module, *args, **kwargs) -> dict[str, float]:
    """The mean hidden-state norm of every recurrent layer while ``model(*args, **kwargs)``
    runs: for each layer, the mean over the batch and the valid steps of ``||x_t|| /
    sqrt(n)`` (``x_t``: the layer's ``(k n,)`` state at step ``t``, both directions of a
    bidirectional layer together; ``n``: its state size), keyed by the layer's path.

    A layer counts as recurrent when it has a ``states(u, mask)`` method (every rung of
    :class:`lru.layers.LRU`). Each such layer's :meth:`states` is evaluated on the input the
    model gives it, so the numbers are those of the model's own forward pass on the task's
    data: 1 is a state at the input's scale, as the LRU's gamma normalisation keeps it at
    initialisation on white noise (Proposition 3), and rungs without gamma grow with
    ``1 / sqrt(1 - |lambda|^2)`` on white noise and up to ``1 / (1 - |lambda|)`` on slowly
    varying inputs such as images.

    Runs eagerly (one batch; no jit), with ``model`` as it is (call ``model.eval()`` first
    for BatchNorm's running statistics).

    Returns:
      ``{path: mean norm}``; ``{}`` for a model without recurrent layers.
    """
    layers = {id(node): "/".join(map(str, path)) or "." for path, node in nnx.iter_graph(model)
              if isinstance(node, nnx.Module) and callable(getattr(node, "states", None))}
    norms: dict[str, float] = {}

    def record(layer, u, mask=None):
        x = layer.states(u, mask)  # (b, t, k n)
        per_step = jnp.linalg.norm(x, axis=-1) / np.sqrt(layer.d_state)  # (b, t)
        if mask is None:
            norms[layers[id(layer)]] = float(jnp.mean(per_step))
        else:
            norms[layers[id(layer)]] = float(jnp.sum(jnp.where(mask, per_step, 0)) /
                                             jnp.maximum(jnp.sum(mask), 1))

    with _calls_recorded({type(node) for path, node in nnx.iter_graph(model)
                          if id(node) in layers}, record):
        model(*args, **kwargs)
    return {path: norms[path] for path in layers.values() if path in norms}


@contextlib.contextmanager
def _calls_recorded(classes, record):
    """While active, calling an instance of one of ``classes`` first runs
    ``record(instance, *args, **kwargs)``."""
    originals = {cls: cls.__call__ for cls in classes}

    def wrap(original):
        def call(self, *args, **kwargs):
            record(self, *args, **kwargs)
            return original(self, *args, **kwargs)
        return call

    try:
        for cls, original in originals.items():
            cls.__call__ = wrap(original)
        yield
    finally:
        for cls, original in originals.items():
            cls.__call__ = original
