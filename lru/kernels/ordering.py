"""Make backward-pass work wait for its cotangent, so XLA cannot hoist it into the forward pass.

XLA:CPU schedules an operation as early as its operands allow and drops optimisation
barriers before it schedules. Backward-pass work that depends only on forward values (a
derivative of the input, a recomputation from saved inputs) is then done during the forward
pass, and its result kept until the backward pass needs it, which is the memory a
hand-written VJP meant to save. With :func:`after`, that work reads one element of the
cotangent first, so it cannot start before the cotangent exists. Used by :mod:`lru.kernels.gelu` and
:mod:`lru.layers.planar` (``tests/test_memory_scaling.py`` fails without it).
"""

from __future__ import annotations

import jax

Array = jax.Array


def after(ct: Array, *xs: Array) -> tuple[Array, ...]:
    """``xs`` unchanged in value (plus ``0 * ct[first element]``), but computed after ``ct``.

    A NaN or infinite first element of ``ct`` makes ``xs`` NaN. That gradient is not finite
    anyway, and the training loop stops on a non-finite loss.
    """
    zero = 0.0 * ct.reshape(-1)[0]
    return tuple(x + zero.astype(x.dtype) for x in xs)
