"""The residual block around every sequence layer: norm, mixer, GELU/GLU, dropout, skip.

Axis legend: ``b`` batch, ``t`` time, ``d`` model width.

The block follows S5's ``SequenceLayer`` (Smith et al. 2023), which the LRU paper uses for
every rung of its ladder (Figure 1: Norm -> Recurrence -> GLU -> Skip)::

    pre-norm:   y = u + drop(glu(drop(gelu(mixer(norm(u))))))
    post-norm:  y = norm(u + drop(glu(drop(gelu(mixer(u))))))

``glu`` is one of S5's variants (``W1``, ``W2`` are d x d linear maps, ``z`` the mixer
output, ``g = drop(gelu(z))``):

* ``"full_glu"``:  ``W1 g * sigmoid(W2 g)``
* ``"half_glu1"``: ``g * sigmoid(W2 g)``
* ``"half_glu2"``: ``z * sigmoid(W2 g)`` (GELU only on the gate's input)
* ``"gelu"``:      ``g`` (no gate)

Dropout draws one mask per example and channel and shares it across time.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from lru.choices import check_choice
from lru.kernels import ops
from lru.precision import check_precision, dot_general

Array = jax.Array

GLU_VARIANTS: tuple[str, ...] = ("full_glu", "half_glu1", "half_glu2", "gelu")
NORMS: tuple[str, ...] = ("batch", "layer")


class MaskedNorm(nnx.Module):
    """BatchNorm or LayerNorm over the channel axis of ``(b, t, d)`` inputs.

    BatchNorm's batch statistics are taken over valid positions only (``mask``), so padding
    never shifts the normalisation of real tokens; at evaluation it uses running averages.
    Training mode computes through :func:`lru.kernels.ops.batch_norm` (``nnx.BatchNorm``
    with a mask; on a single CPU device the same function with a faster backward).

    Args:
      d_model: channels ``d``.
      kind: ``"batch"`` or ``"layer"``.
      momentum: BatchNorm running-average momentum, ``running = momentum * running +
        (1 - momentum) * batch`` (Flax's convention; PyTorch's ``momentum=0.1`` is 0.9
        here). 0.9 by default; S5's ``run_train.py`` defaults to 0.95.
      rngs: RNG streams.
    """

    def __init__(self, d_model: int, kind: str = "batch", *, momentum: float = 0.9,
                 rngs: nnx.Rngs):
        check_choice("norm", kind, NORMS)
        self.kind = kind
        if kind == "batch":
            self.norm = nnx.BatchNorm(d_model, momentum=momentum, axis=-1, rngs=rngs)
        else:
            self.norm = nnx.LayerNorm(d_model, rngs=rngs)

    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        """``x: (b, t, d)``, ``mask: (b, t)`` or None -> ``(b, t, d)``."""
        if self.kind != "batch" or self.norm.use_running_average:
            return self.norm(x)
        return ops.batch_norm(self.norm, x, mask)


class ResidualBlock(nnx.Module):
    """Norm, sequence mixer, GELU/GLU, dropout and skip connection.

    Args:
      d_model: width ``d``.
      mixer: the sequence layer, a module mapping ``(b, t, d), mask -> (b, t, d)``.
      norm: ``"batch"`` or ``"layer"``.
      bn_momentum: BatchNorm's running-average momentum (see :class:`MaskedNorm`).
      prenorm: normalise the block's input (True) or its output (False).
      glu: one of :data:`GLU_VARIANTS`.
      dropout: dropout rate, one mask per (example, channel) shared across time.
      precision: ``"fp32"``, or ``"bf16"`` for the GLU's matmuls (:mod:`lru.precision`).
      rngs: RNG streams (``params`` and ``dropout``).
    """

    def __init__(
        self,
        d_model: int,
        mixer: nnx.Module,
        *,
        norm: str = "batch",
        bn_momentum: float = 0.9,
        prenorm: bool = True,
        glu: str = "full_glu",
        dropout: float = 0.0,
        precision: str = "fp32",
        rngs: nnx.Rngs,
    ):
        check_choice("glu", glu, GLU_VARIANTS)
        self.mixer = mixer
        self.norm = MaskedNorm(d_model, norm, momentum=bn_momentum, rngs=rngs)
        self.prenorm = prenorm
        self.glu = glu
        self.drop = nnx.Dropout(dropout, broadcast_dims=(1,), rngs=rngs)
        self.precision = check_precision(precision)
        if glu == "full_glu":
            self.W1 = nnx.Linear(d_model, d_model, dot_general=dot_general(precision), rngs=rngs)
        if glu != "gelu":
            self.W2 = nnx.Linear(d_model, d_model, dot_general=dot_general(precision), rngs=rngs)

    def __call__(self, u: Array, mask: Array | None = None) -> Array:
        """``u: (b, t, d)``, ``mask: (b, t)`` or None -> ``(b, t, d)``."""
        # named scopes label the ops in profiles (bench/profile_step.py)
        with jax.named_scope("norm"):
            z = self.norm(u, mask) if self.prenorm else u
        with jax.named_scope("mixer"):  # the LRU and S5 label B, recurrence, C, D inside
            z = self.mixer(z, mask)
        with jax.named_scope("gelu"):
            g = self.drop(ops.gelu(z))
        with jax.named_scope("glu"):
            y = self._glu_and_skip(u, z, g)
        if self.prenorm:
            return y
        with jax.named_scope("norm"):
            return self.norm(y, mask)

    def _glu_and_skip(self, u: Array, z: Array, g: Array) -> Array:
        """``u + drop(GLU variant)`` from the mixer output ``z`` and ``g = drop(gelu(z))``."""
        if self.glu == "full_glu":  # W1 g * sigmoid(W2 g)
            weights = (self.W1.kernel[...], self.W1.bias[...], self.W2.kernel[...],
                       self.W2.bias[...], self.precision)
            if self.drop.deterministic or self.drop.rate == 0:  # no dropout: u + GLU, fused
                return ops.residual_full_glu(u, g, *weights)
            z = ops.full_glu(g, *weights)
        elif self.glu == "half_glu1":
            z = g * jax.nn.sigmoid(self.W2(g))
        elif self.glu == "half_glu2":
            z = z * jax.nn.sigmoid(self.W2(g))
        else:
            z = g
        return u + self.drop(z)


MixerFactory = Callable[[nnx.Rngs], nnx.Module]


def stack_blocks(
    d_model: int, n_layers: int, mixer: MixerFactory, *, rngs: nnx.Rngs, **block_kwargs
) -> nnx.List:
    """``n_layers`` residual blocks, each with a fresh mixer from ``mixer(rngs=rngs)``."""
    return nnx.List(
        [ResidualBlock(d_model, mixer(rngs=rngs), rngs=rngs, **block_kwargs) for _ in range(n_layers)]
    )


def length_mask(lengths: Array | None, time: int) -> Array | None:
    """``(b, t)`` boolean mask, True on the first ``lengths[i]`` steps; None when no lengths."""
    if lengths is None:
        return None
    return jnp.arange(time)[None, :] < jnp.asarray(lengths)[:, None]
