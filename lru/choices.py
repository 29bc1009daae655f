"""The one check of a setting with a closed set of values, and its one message.

Every option with named choices (the scan method, the precision, the norm, the GLU variant,
the pooling, a config's ``model.layer``) is checked here, by the library's constructors
and by the training config's validation alike, so the message names the key and the valid
values the same way wherever the bad value arrives.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TypeVar

T = TypeVar("T")


def check_choice(key: str, value: T, allowed: Collection) -> T:
    """``value`` if it is one of ``allowed``, else a ValueError naming ``key`` and the choices.

    Args:
      key: the setting's name as the user knows it (``"scan_method"``, ``"model.glu"``).
      value: the value given.
      allowed: the valid values, in the order the message lists them.
    """
    if value not in allowed:
        raise ValueError(f"{key}={value!r} is not valid; choose one of {tuple(allowed)}")
    return value
