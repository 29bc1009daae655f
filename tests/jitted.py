"""A model's forward as one compiled program per model structure and input shape.

Called eagerly, a model compiles every operation apart, once per shape; most of a small
test's time went there. Tests that compare outputs call :data:`forward` on both sides, so
both come from the same kind of program.
"""

from __future__ import annotations

from flax import nnx

#: ``forward(model, *args) == model(*args)``, jitted (``nnx.jit``; any model).
forward = nnx.jit(lambda model, *args: model(*args))
