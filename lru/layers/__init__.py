"""Sequence layers: each maps ``(b, t, d), mask -> (b, t, d)`` and is one file here."""

from lru.layers.lru import LRU

__all__ = ["LRU"]
