"""The training harness: :func:`lru.training.loop.train` (``train(cfg) -> summary``), the
config schemas, the layer registry, optimizer groups, batching, checkpoints, run files and
their lock, multi-host sharding, and restoring trained models. It imports the library;
the library never imports it."""
