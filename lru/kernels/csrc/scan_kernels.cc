// Linear recurrences as XLA FFI handlers for the CPU (lru/kernels/native.py builds this file and
// registers them). The first pair is the LRU's (and S5's) complex time-invariant
// recurrence on real [Re | Im] storage:
//
//   forward:   x_t = a * x_prev(t) + m_t b_t              (complex a: (n,); b, x: [Re | Im])
//   adjoint:   lam_t = g_t + conj(a) * lam_next(t),        db_t = m_t lam_t,
//              da = sum_t conj(lam_t) * x_prev(t)          (JAX's cotangent convention)
//
// prev(t) is t-1 going forwards and t+1 with `reverse`; next(t) is the other neighbour;
// x_prev is zero before the first step. m: (rows, t) booleans, False on padding. Every row
// (one sequence of b's leading axes) is an independent walk over time that streams its
// (t, 2n) slab once and keeps its n complex states in L1, so a row costs one read of b and
// one write of x: the memory bound. Rows are shared out over XLA's intra-op thread pool.
// `a` may carry leading axes too (vmap with broadcast_all): they split the rows into equal
// groups, and group j uses a's row j.
//
// The second pair of handlers is the real input-dependent recurrence (RG-LRU):
//
//   forward:   x_t = a_t x_prev(t) + b_t,                   x_prev of the first step = h0
//   adjoint:   lam_t = g_t + a_next(t) lam_next(t),  db_t = lam_t,  da_t = lam_t x_prev(t),
//              dh0 = a_first lam_first
//
// with a, b, x, g: (rows, t, n) and h0: (rows, n), row by row in the same way.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "parallel_rows.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using lru_native::ParallelRows;

struct Layout {
  int64_t rows, time, n, per_group;
};

// The shapes, checked: a_re, a_im (groups..., n), m (rows..., t), b (..., 2n) with rows * t *
// 2n elements. b's leading axes need not split into rows and t: the wrappers pass it as
// (rows * t, 2n), the product's own shape, because XLA copies a reshaped operand before a
// handler may write over it.
ffi::Error GetLayout(const ffi::Buffer<ffi::F32>& a_re, const ffi::Buffer<ffi::F32>& a_im,
                     const ffi::Buffer<ffi::F32>& b, const ffi::Buffer<ffi::PRED>& m,
                     Layout& l) {
  auto bd = b.dimensions();
  auto ad = a_re.dimensions();
  auto md = m.dimensions();
  if (bd.size() < 1 || ad.size() < 1 || md.size() < 1 ||
      a_im.element_count() != a_re.element_count()) {
    return ffi::Error::InvalidArgument("planar_scan: a_re, a_im (..., n), b (..., 2n), m (..., t)");
  }
  l.n = ad.back();
  l.time = md.back();
  if (l.n == 0 || bd.back() != 2 * l.n) {
    return ffi::Error::InvalidArgument("planar_scan: b's last axis must be 2n, n > 0");
  }
  l.rows = l.time ? m.element_count() / l.time : 0;
  int64_t groups = a_re.element_count() / l.n;
  if (groups == 0 || l.rows % groups || b.element_count() != l.rows * l.time * 2 * l.n) {
    return ffi::Error::InvalidArgument(
        "planar_scan: a's leading axes must divide m's rows and b must hold rows * t * 2n");
  }
  l.per_group = l.rows / groups;
  return ffi::Error::Success();
}

// One row forwards: x_t = a * x_prev(t) + m_t b_t. `zeros` holds 2n zeros.
void ForwardRow(const float* __restrict ar, const float* __restrict ai,
                const float* __restrict b, const bool* __restrict m, float* __restrict x,
                int64_t time, int64_t n, bool reverse, float* __restrict hr,
                float* __restrict hi, const float* __restrict zeros) {
  std::fill(hr, hr + n, 0.f);
  std::fill(hi, hi + n, 0.f);
  for (int64_t s = 0; s < time; ++s) {
    int64_t t = reverse ? time - 1 - s : s;
    const float* __restrict bt = m[t] ? b + t * 2 * n : zeros;
    float* __restrict xt = x + t * 2 * n;
#pragma GCC ivdep
    for (int64_t k = 0; k < n; ++k) {
      float re = ar[k] * hr[k] - ai[k] * hi[k] + bt[k];
      float im = ai[k] * hr[k] + ar[k] * hi[k] + bt[n + k];
      hr[k] = re;
      hi[k] = im;
      xt[k] = re;
      xt[n + k] = im;
    }
  }
}

// One row of the adjoint, walked against the forward direction: lam_t = g_t + conj(a)
// lam_next(t), db_t = m_t lam_t, and this row's da = sum_t conj(lam_t) x_prev(t) into dr, di.
void AdjointRow(const float* __restrict ar, const float* __restrict ai,
                const float* __restrict x, const float* __restrict g, const bool* __restrict m,
                float* __restrict db, int64_t time, int64_t n, bool reverse,
                float* __restrict lr, float* __restrict li, float* __restrict dr,
                float* __restrict di, const float* __restrict zeros) {
  std::fill(lr, lr + n, 0.f);
  std::fill(li, li + n, 0.f);
  std::fill(dr, dr + n, 0.f);
  std::fill(di, di + n, 0.f);
  for (int64_t s = 0; s < time; ++s) {
    int64_t t = reverse ? s : time - 1 - s;  // the forward walk's order, reversed
    int64_t p = reverse ? t + 1 : t - 1;      // prev(t) of the forward walk
    const float* __restrict gt = g + t * 2 * n;
    float* __restrict dbt = db + t * 2 * n;
    const float keep = m[t] ? 1.f : 0.f;
#pragma GCC ivdep
    for (int64_t k = 0; k < n; ++k) {
      float re = ar[k] * lr[k] + ai[k] * li[k] + gt[k];
      float im = ar[k] * li[k] - ai[k] * lr[k] + gt[n + k];
      lr[k] = re;
      li[k] = im;
      dbt[k] = keep * re;
      dbt[n + k] = keep * im;
    }
    const float* __restrict xp = (p < 0 || p >= time) ? zeros : x + p * 2 * n;
#pragma GCC ivdep
    for (int64_t k = 0; k < n; ++k) {
      dr[k] += lr[k] * xp[k] + li[k] * xp[n + k];
      di[k] += li[k] * xp[k] - lr[k] * xp[n + k];
    }
  }
}

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a_re,
                       ffi::Buffer<ffi::F32> a_im, ffi::Buffer<ffi::F32> b,
                       ffi::Buffer<ffi::PRED> m, ffi::ResultBuffer<ffi::F32> x, bool reverse) {
  Layout l;
  if (ffi::Error e = GetLayout(a_re, a_im, b, m, l); e.failure()) return e;
  const int64_t slab = l.time * 2 * l.n;
  const std::vector<float> zeros(2 * l.n, 0.f);
  ParallelRows(pool, l.rows, [&](int64_t r) {
    std::vector<float> h(2 * l.n);
    const int64_t a_off = (r / l.per_group) * l.n;
    ForwardRow(a_re.typed_data() + a_off, a_im.typed_data() + a_off,
               b.typed_data() + r * slab, m.typed_data() + r * l.time,
               x->typed_data() + r * slab, l.time, l.n, reverse, h.data(), h.data() + l.n,
               zeros.data());
  });
  return ffi::Error::Success();
}

ffi::Error AdjointImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a_re,
                       ffi::Buffer<ffi::F32> a_im, ffi::Buffer<ffi::F32> x,
                       ffi::Buffer<ffi::F32> g, ffi::Buffer<ffi::PRED> m,
                       ffi::ResultBuffer<ffi::F32> db, ffi::ResultBuffer<ffi::F32> da_re,
                       ffi::ResultBuffer<ffi::F32> da_im, bool reverse) {
  Layout l;
  if (ffi::Error e = GetLayout(a_re, a_im, g, m, l); e.failure()) return e;
  const int64_t slab = l.time * 2 * l.n;
  const std::vector<float> zeros(2 * l.n, 0.f);
  std::vector<float> partial(l.rows * 2 * l.n);  // each row's da, summed in row order below
  ParallelRows(pool, l.rows, [&](int64_t r) {
    std::vector<float> state(2 * l.n);
    const int64_t a_off = (r / l.per_group) * l.n;
    float* d = partial.data() + r * 2 * l.n;
    AdjointRow(a_re.typed_data() + a_off, a_im.typed_data() + a_off,
               x.typed_data() + r * slab, g.typed_data() + r * slab,
               m.typed_data() + r * l.time, db->typed_data() + r * slab, l.time, l.n, reverse,
               state.data(), state.data() + l.n, d, d + l.n, zeros.data());
  });
  // da per group, its rows' shares summed in double (deterministic: no thread order)
  const int64_t groups = l.per_group ? l.rows / l.per_group : a_re.element_count() / l.n;
  for (int64_t grp = 0; grp < groups; ++grp) {
    for (int64_t k = 0; k < l.n; ++k) {
      double sr = 0, si = 0;
      for (int64_t r = grp * l.per_group; r < (grp + 1) * l.per_group; ++r) {
        sr += partial[r * 2 * l.n + k];
        si += partial[r * 2 * l.n + l.n + k];
      }
      da_re->typed_data()[grp * l.n + k] = static_cast<float>(sr);
      da_im->typed_data()[grp * l.n + k] = static_cast<float>(si);
    }
  }
  return ffi::Error::Success();
}

// Real input-dependent rows: a, b, x, g, da, db are (rows, t, n); h0, dh0 are (rows, n).
ffi::Error GetDiagLayout(const ffi::Buffer<ffi::F32>& a, const ffi::Buffer<ffi::F32>& h0,
                         int64_t& rows, int64_t& time, int64_t& n) {
  auto d = a.dimensions();
  if (d.size() < 2) return ffi::Error::InvalidArgument("diag_scan: a must be (..., t, n)");
  time = d[d.size() - 2];
  n = d.back();
  rows = time && n ? a.element_count() / (time * n) : 0;
  if (h0.element_count() != rows * n) {
    return ffi::Error::InvalidArgument("diag_scan: h0 must be (rows, n)");
  }
  return ffi::Error::Success();
}

ffi::Error DiagForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a,
                           ffi::Buffer<ffi::F32> b, ffi::Buffer<ffi::F32> h0,
                           ffi::ResultBuffer<ffi::F32> x, bool reverse) {
  int64_t rows, time, n;
  if (ffi::Error e = GetDiagLayout(a, h0, rows, time, n); e.failure()) return e;
  ParallelRows(pool, rows, [&](int64_t r) {
    const float* __restrict ar = a.typed_data() + r * time * n;
    const float* __restrict br = b.typed_data() + r * time * n;
    float* __restrict xr = x->typed_data() + r * time * n;
    std::vector<float> h(h0.typed_data() + r * n, h0.typed_data() + (r + 1) * n);
    float* __restrict hp = h.data();
    for (int64_t s = 0; s < time; ++s) {
      const int64_t o = (reverse ? time - 1 - s : s) * n;
#pragma GCC ivdep
      for (int64_t k = 0; k < n; ++k) {
        hp[k] = ar[o + k] * hp[k] + br[o + k];
        xr[o + k] = hp[k];
      }
    }
  });
  return ffi::Error::Success();
}

ffi::Error DiagAdjointImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a,
                           ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> h0,
                           ffi::Buffer<ffi::F32> g, ffi::ResultBuffer<ffi::F32> db,
                           ffi::ResultBuffer<ffi::F32> da, ffi::ResultBuffer<ffi::F32> dh0,
                           bool reverse) {
  int64_t rows, time, n;
  if (ffi::Error e = GetDiagLayout(a, h0, rows, time, n); e.failure()) return e;
  ParallelRows(pool, rows, [&](int64_t r) {
    const int64_t off = r * time * n;
    const float* __restrict ar = a.typed_data() + off;
    // no __restrict: db is written over g's buffer and da over x's where XLA aliases them
    // (slot t of x is last read, as x_prev, one step before da's slot t is written)
    const float* xr = x.typed_data() + off;
    const float* gr = g.typed_data() + off;
    float* dbr = db->typed_data() + off;
    float* dar = da->typed_data() + off;
    const float* __restrict h0r = h0.typed_data() + r * n;
    std::vector<float> lam(n, 0.f);
    float* __restrict lp = lam.data();
    for (int64_t s = 0; s < time; ++s) {
      const int64_t t = reverse ? s : time - 1 - s;  // against the forward walk
      const int64_t nxt = reverse ? t - 1 : t + 1;    // processed just before t
      const int64_t prv = reverse ? t + 1 : t - 1;    // the state a_t multiplied
      const float* __restrict an = (nxt >= 0 && nxt < time) ? ar + nxt * n : ar + t * n;
      const float* __restrict xp = (prv >= 0 && prv < time) ? xr + prv * n : h0r;
      const int64_t o = t * n;
#pragma GCC ivdep
      for (int64_t k = 0; k < n; ++k) {
        lp[k] = an[k] * lp[k] + gr[o + k];  // lam is 0 before the first step: an unused
        dbr[o + k] = lp[k];
        dar[o + k] = lp[k] * xp[k];
      }
    }
    const int64_t first = reverse ? time - 1 : 0;
    for (int64_t k = 0; k < n; ++k) {
      dh0->typed_data()[r * n + k] = time ? ar[first * n + k] * lp[k] : 0.f;
    }
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(LruDiagScanForward, DiagForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // a
                                  .Arg<ffi::Buffer<ffi::F32>>()   // b
                                  .Arg<ffi::Buffer<ffi::F32>>()   // h0
                                  .Ret<ffi::Buffer<ffi::F32>>()   // x
                                  .Attr<bool>("reverse"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(LruDiagScanAdjoint, DiagAdjointImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // a
                                  .Arg<ffi::Buffer<ffi::F32>>()   // x
                                  .Arg<ffi::Buffer<ffi::F32>>()   // h0
                                  .Arg<ffi::Buffer<ffi::F32>>()   // g
                                  .Ret<ffi::Buffer<ffi::F32>>()   // db
                                  .Ret<ffi::Buffer<ffi::F32>>()   // da
                                  .Ret<ffi::Buffer<ffi::F32>>()   // dh0
                                  .Attr<bool>("reverse"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(LruPlanarScanForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // a_re
                                  .Arg<ffi::Buffer<ffi::F32>>()   // a_im
                                  .Arg<ffi::Buffer<ffi::F32>>()   // b
                                  .Arg<ffi::Buffer<ffi::PRED>>()  // m
                                  .Ret<ffi::Buffer<ffi::F32>>()   // x
                                  .Attr<bool>("reverse"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(LruPlanarScanAdjoint, AdjointImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // a_re
                                  .Arg<ffi::Buffer<ffi::F32>>()   // a_im
                                  .Arg<ffi::Buffer<ffi::F32>>()   // x
                                  .Arg<ffi::Buffer<ffi::F32>>()   // g
                                  .Arg<ffi::Buffer<ffi::PRED>>()  // m
                                  .Ret<ffi::Buffer<ffi::F32>>()   // db
                                  .Ret<ffi::Buffer<ffi::F32>>()   // da_re
                                  .Ret<ffi::Buffer<ffi::F32>>()   // da_im
                                  .Attr<bool>("reverse"));
