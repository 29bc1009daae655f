"""Everything that exists only for speed, each piece beside a test against the plain form.

* :mod:`lru.kernels.loops`: XLA loops of the recurrences (in place, chunked, planar) and
  the in-place adjoint;
* :mod:`lru.kernels.pallas_scan`: the chunked Pallas/Triton GPU kernel;
* :mod:`lru.kernels.native` + ``csrc/``: compiled CPU kernels (scans, the GLU's gate);
* :mod:`lru.kernels.gelu`, :mod:`~lru.kernels.glu`, :mod:`~lru.kernels.batchnorm`,
  :mod:`~lru.kernels.projection`, :mod:`~lru.kernels.recompute`: hand-written VJPs that
  XLA:CPU runs faster or in less memory than autodiff's, with
  :mod:`lru.kernels.ordering`'s scheduling aid;
* :mod:`lru.kernels.cpu_allocator`: process-wide malloc and dispatch settings;
* :mod:`lru.kernels.backend`: where each of them was measured to pay.

The library reaches this room through two entry points only: :mod:`lru.scan` (the
recurrences' methods) and :mod:`lru.kernels.ops` (the block's and the readout's fused
operations, each falling back to plain JAX where it was not measured to pay).
"""
