"""Offline generators that write the official LRA layouts (ListOps, Pathfinder)."""
