"""The LRU harness library: scan core, layers, models (see docs/design.md)."""
