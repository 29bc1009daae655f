"""Recompute a function's intermediates in the backward pass, each layer in its turn.

``jax.checkpoint`` is the plain form. On XLA:CPU it started every layer's recomputation as
soon as its inputs existed (XLA schedules an operation as early as its operands allow and
drops optimisation barriers before scheduling), so all layers' recomputed states were alive
at once at the top of the backward pass: the step's planned memory *grew* (1.48 -> 1.54
GiB). :func:`recompute` writes the VJP by hand and makes each recomputation read its
cotangent first (:func:`lru.kernels.ordering.after`), so it waits for its layer's turn
(``tests/test_memory_scaling.py``).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax

from lru.kernels.ordering import after

Array = jax.Array


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def recompute(fn: Callable, args: tuple, aux: tuple):
    """``fn(*args, *aux)``, keeping only ``args`` and ``aux`` for the backward pass.

    Args:
      fn: a function of arrays; static (closed-over settings go in a ``functools.partial``).
      args: the differentiable arguments, a tuple of arrays.
      aux: arguments without gradients (masks, or None), a tuple.

    Returns:
      ``fn``'s result; its gradients reach ``args`` (``aux`` gets none).
    """
    return fn(*args, *aux)


def _fwd(fn, args, aux):
    return fn(*args, *aux), (args, aux)


def _bwd(fn, saved, g):
    args, aux = saved
    first = jax.tree.leaves(g)[0]
    args = after(first, *args)
    _, vjp = jax.vjp(lambda *a: fn(*a, *aux), *args)
    return tuple(vjp(g)), jax.tree.map(lambda _: None, aux)


recompute.defvjp(_fwd, _bwd)
