"""Matmul precision: float32 everywhere, or bfloat16 matmuls with float32 accumulation.

``precision="bf16"`` (``trainer.precision=bf16``) casts the two operands of the models'
dense projections -- the encoder, the sequence layers' input and output maps (LRU and S5
``B`` and ``C``), the GLU's linear maps and the heads -- to bfloat16 and accumulates the
product in float32 (``preferred_element_type``), so the result, and everything after it
(the recurrence, normalisation, pooling, the loss), stays float32. Parameters and optimizer
state stay float32 too: this is mixed-precision *compute*, not low-precision storage.
``"fp32"`` is plain float32 (the papers' setting and the default).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from lru.choices import check_choice

Array = jax.Array

#: The values of ``trainer.precision``.
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ValueError naming them."""
    return check_choice("precision", precision, PRECISIONS)


def _bf16_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None,
                      **kwargs):
    """``lax.dot_general`` on bfloat16 operands, accumulated and returned in float32."""
    del preferred_element_type  # always float32
    return jax.lax.dot_general(lhs.astype(jnp.bfloat16), rhs.astype(jnp.bfloat16),
                               dimension_numbers, precision=precision,
                               preferred_element_type=jnp.float32, **kwargs)


def dot_general(precision: str) -> Callable:
    """The ``dot_general`` for ``nnx.Linear(..., dot_general=...)`` at ``precision``."""
    return _bf16_dot_general if check_precision(precision) == "bf16" else jax.lax.dot_general


def matmul(x: Array, w: Array, precision: str) -> Array:
    """``x @ w`` at ``precision``: ``(..., k) @ (k, m) -> (..., m)``, float32 out for bf16."""
    if check_precision(precision) == "fp32":
        return x @ w
    return jnp.matmul(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16),
                      preferred_element_type=jnp.float32)
