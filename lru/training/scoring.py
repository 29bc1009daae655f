"""What a prediction scores: the loss and the accuracies (the majority-class rate they are
read against is the data's: :func:`tasks.base.majority_rate`).

Axis legend: ``b`` batch, ``t`` time, ``c`` classes, ``e`` examples.

One definition for both kinds of task (:mod:`tasks.base`). A sequence task has one label per
example (``logits (b, c)``, ``labels (b,)``); a per-token task has a target at every position
(``logits (b, t, c)``, ``labels (b, t)``), :data:`tasks.base.IGNORE` where a position is not
scored (and at padding). Both are read as examples with some scored positions (a sequence
task's example has exactly one), so every path, training and evaluation, one device or
many, takes its loss and accuracy from :func:`example_scores`:

* loss: the cross-entropy averaged over scored positions;
* accuracy: the fraction of scored positions predicted right;
* sequence accuracy (per-token tasks): the fraction of examples whose every scored position
  is predicted right (an example with none scored counts as right).

An unscored target never indexes the logits: it is replaced by class 0 before the
cross-entropy, whose value there is then discarded.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from tasks.base import IGNORE

Array = jax.Array


def example_scores(logits: Array, labels: Array) -> dict[str, Array]:
    """Each example's summed loss, correct and scored counts, and whether it is all right.

    Args:
      logits: ``(b, c)`` or ``(b, t, c)``.
      labels: ``(b,)`` or ``(b, t)`` int class ids, :data:`~tasks.base.IGNORE` where unscored.

    Returns:
      ``"loss"``: ``(b,)`` cross-entropy summed over the example's scored positions;
      ``"correct"``: ``(b,)`` scored positions whose argmax is the label; ``"scored"``:
      ``(b,)`` scored positions; ``"all_correct"``: ``(b,)`` 1.0 where every scored
      position is right. All float32.
    """
    scored = labels != IGNORE
    safe = jnp.where(scored, labels, 0)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, safe)
    losses = jnp.where(scored, losses, 0.0)
    right = (jnp.argmax(logits, -1) == labels) & scored
    per_example = lambda x: x.reshape(x.shape[0], -1).sum(axis=1).astype(jnp.float32)
    all_right = (right | ~scored).reshape(scored.shape[0], -1).all(axis=1)
    return {"loss": per_example(losses), "correct": per_example(right),
            "scored": per_example(scored), "all_correct": all_right.astype(jnp.float32)}


def batch_metrics(logits: Array, labels: Array) -> dict[str, Array]:
    """The batch's mean loss over scored positions (the training objective), its accuracy
    over scored positions and its sequence accuracy (see the module docstring)."""
    s = example_scores(logits, labels)
    scored = jnp.maximum(s["scored"].sum(), 1.0)
    return {"loss": s["loss"].sum() / scored, "accuracy": s["correct"].sum() / scored,
            "sequence_accuracy": s["all_correct"].mean()}
