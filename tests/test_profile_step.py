"""bench/profile_step.py on a tiny ListOps model: every labelled part of the model shows up in
the time profile, the kept activations add up to XLA's planned temporaries, and the op-name
parsing it rests on."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import profile_step  # noqa: E402


@pytest.mark.parametrize("op_name, part", [
    ("jit(step)/jvp(mixer/B)/dot_general", "B"),
    ("jit(step)/transpose(jvp(mixer/recurrence))/ffi_call", "recurrence"),
    ("jit(step)/transpose(jvp(glu))/ffi_call", "glu"),
    ("jit(step)/optimizer/add", "optimizer"),
    ("jit(step)/jvp(mixer)/exp", "mixer"),
    ("jit(step)/jvp()/concatenate", "other"),
])
def test_part_of_reads_the_innermost_named_scope(op_name, part):
    assert profile_step.part_of(op_name) == part


def test_nbytes_sums_tuple_shapes():
    assert profile_step.nbytes("(f32[2,3]{1,0}, pred[4]{0})") == 2 * 3 * 4 + 4
    assert profile_step.nbytes("f32[]") == 4


HLO = """
ENTRY %main.1 (p: f32[4,8]) -> f32[4,8] {
  %p = f32[4,8]{1,0} parameter(0), metadata={op_name="x"}
  %gelu = f32[4,8]{1,0} fusion(%p), kind=kLoop, calls=%f, metadata={op_name="jit(step)/jvp(gelu)/mul"}
  %flat = f32[32]{0} bitcast(%gelu), metadata={op_name="jit(step)/jvp(gelu)/mul"}
  %a = f32[4,8]{1,0} add(%gelu, %gelu), metadata={op_name="jit(step)/transpose(jvp(glu))/mul"}
  ROOT %b = f32[32]{0} negate(%flat), metadata={op_name="jit(step)/transpose(jvp(glu))/dot"}
}
"""


def test_kept_activations_count_a_bitcast_view_once():
    """An array the backward reads both directly and through a bitcast (a reshape that XLA
    makes a view) is one buffer: counted once, under its producer's part; parameters never."""
    instrs = profile_step.entry_instructions(HLO)
    assert profile_step.kept_activations(instrs, {}) == {"gelu": 4 * 8 * 4}


def test_tiny_listops_profile_covers_every_part_and_its_memory():
    args = argparse.Namespace(batch=4, length=64, layers=1, steps=1)
    r = profile_step.profile_task("listops", args)
    parts = {key.split("/")[0] for key, ms in r["ms_per_step"].items() if ms > 0}
    assert {"B", "recurrence", "C", "norm", "gelu", "glu", "optimizer"} <= parts
    products = {key.split("/")[0] for key in r["ms_per_step"] if key.endswith("/products")}
    assert {"B", "C", "glu"} <= products and "recurrence" not in products
    temp = r["memory_MiB"]["timed_batch"]["temp"]
    kept = sum(r["kept_MiB"].values())
    assert r["kept_MiB"]["recurrence"] > 0 and 0.5 * temp < kept < 1.5 * temp
    assert r["memory_MiB"]["paper_batch"]["temp"] > temp  # the paper's batch 32 planned too
    assert profile_step.summarise(r)[-1].startswith("total")
