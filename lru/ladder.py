"""The LRU paper's ablation ladder: every rung as a row of one table.

Orvieto et al. (2023) walk from a tanh RNN to the LRU one change at a time (Tables 1-3):
remove the nonlinearity, diagonalise (complex), parameterise the eigenvalues exponentially,
make that parameterisation stable, initialise on a ring, normalise the input by gamma.
The rungs differ only in *how the recurrence is parameterised, initialised and normalised*;
:class:`lru.layers.lru.LRU` reads one :class:`Rung` and builds exactly that variant.

``RUNG_NAMES`` is the single source of truth for rung names: configs, sweeps and tables
use it and nothing else; :func:`uses_ring` is the one rule for which runs start on a ring.
"""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class Rung:
    """One step of the ladder.

    Attributes:
      name: the rung's name in configs and tables.
      label: the row label the paper uses.
      transition: ``"dense"`` (a full ``N x N`` matrix ``A``) or ``"diagonal"`` (``Lambda``).
      activation: nonlinearity of a dense recurrence, ``"relu"``, ``"tanh"`` or ``None``.
      parameterization: how the diagonal ``Lambda`` is built from parameters:
        ``"real_imag"`` (``Lambda_re + i Lambda_im``), ``"exp"`` (``exp(-nu + i theta)``),
        ``"stable_exp"`` (``exp(-exp(nu_log) + i exp(theta_log))``); ``None`` when dense.
      ring_init: eigenvalues initialised on the ring ``r_min <= |lambda| <= r_max``,
        ``arg lambda in [0, max_phase]``; otherwise uniformly on the unit disk (the
        eigenvalue distribution of a Glorot-initialised matrix).
      gamma: input normalised by the learned ``gamma = exp(gamma_log)``, initialised to
        ``sqrt(1 - |lambda|^2)``.
    """

    name: str
    label: str
    transition: Literal["dense", "diagonal"]
    activation: Literal["relu", "tanh"] | None = None
    parameterization: Literal["real_imag", "exp", "stable_exp"] | None = None
    ring_init: bool = False
    gamma: bool = False


LADDER: tuple[Rung, ...] = (
    Rung("rnn_relu", "RNN-ReLU", "dense", activation="relu"),
    Rung("rnn_tanh", "RNN-Tanh", "dense", activation="tanh"),
    Rung("linear_dense", "Linear dense", "dense"),
    Rung("diag_complex", "Diagonal complex (Re + Im)", "diagonal", parameterization="real_imag"),
    Rung("exp", "Exp parameterization", "diagonal", parameterization="exp"),
    Rung("stable_exp", "Stable exp parameterization", "diagonal", parameterization="stable_exp"),
    Rung("ring", "+ Ring init", "diagonal", parameterization="stable_exp", ring_init=True),
    Rung("lru", "+ gamma normalization (LRU)", "diagonal", parameterization="stable_exp",
         ring_init=True, gamma=True),
)

#: Rung names in ladder order.
RUNG_NAMES: tuple[str, ...] = tuple(r.name for r in LADDER)

_BY_NAME = {r.name: r for r in LADDER}


def get_rung(name: str) -> Rung:
    """The :class:`Rung` called ``name``; a ValueError lists the valid names otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown rung {name!r}; choose one of {RUNG_NAMES}") from None


def rung_of(layer: str, rung: str | None) -> str | None:
    """The rung a run of ``model.layer=layer`` and ``ablation.rung=rung`` is on: ``rung`` for
    the LRU, None for every other layer (the rungs are the LRU's; S4D, S5, ... have none)."""
    return rung if layer == "lru" else None


def uses_ring(layer: str, rung: str | None) -> bool:
    """Whether a run of ``model.layer=layer`` and ``ablation.rung=rung`` starts on a ring.

    Only the LRU's rungs with ring initialisation (``ring`` and ``lru``) read the ring
    ``model.r_min``, ``model.r_max``, ``model.max_phase``; the rungs before ``ring`` start on
    the unit disk, and other layers (S4D, S5, ...) have no rungs and take their own
    initialisation, whatever ``rung`` says.

    Args:
      layer: the model's layer, ``model.layer`` (``"lru"``, ``"s5"``, ...).
      rung: the rung, ``ablation.rung``; read only when ``layer`` is ``"lru"``.

    Returns:
      True for the ring rungs of the LRU, else False.

    Raises:
      ValueError: ``layer`` is ``"lru"`` and ``rung`` is no rung (the message lists them).
    """
    return layer == "lru" and get_rung(rung).ring_init
