"""The LRU harness in three rooms (docs/design.md):

* the library, here: the recurrence API (:mod:`lru.scan`), the ladder (:mod:`lru.ladder`),
  the layers (:mod:`lru.layers`), the residual block and models (:mod:`lru.blocks`,
  :mod:`lru.models`), Hawk/Griffin (:mod:`lru.griffin`) and the analysis of trained
  layers (:mod:`lru.analysis`): the papers' equations;
* :mod:`lru.kernels`: everything that exists only for speed, reached from the library
  through :mod:`lru.scan` and :mod:`lru.kernels.ops`;
* :mod:`lru.training`: the harness (``train(cfg) -> summary``, configs, optimizer groups,
  batching, checkpoints, run files, multi-host). ``python -m lru.train`` is its Hydra app.

Library modules never import the harness (``tests/test_imports.py``).
"""
