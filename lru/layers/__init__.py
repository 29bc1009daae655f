"""Sequence layers: each maps ``(b, t, d), mask -> (b, t, d)`` and is one file here."""

from lru.layers.lru import LRU
from lru.layers.rglru import RGLRU, RGLRULayer
from lru.layers.s4 import S4
from lru.layers.s4d import S4D
from lru.layers.s5 import S5

__all__ = ["LRU", "RGLRU", "RGLRULayer", "S4", "S4D", "S5"]
