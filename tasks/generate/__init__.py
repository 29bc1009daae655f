"""Offline generators: the official LRA layouts (ListOps, Pathfinder) and the synthetic
tasks (recall; the per-token selective_copy, induction_heads and mqar)."""
