// The GLU's gate and the residual skip around it, as XLA FFI handlers for the CPU
// (lru/kernels/native.py builds this file with scan_kernels.cc and registers them):
//
//   forward:   out = u + (a1 + b1) * sigmoid(a2 + b2)
//   backward:  da1 = dout * s,  da2 = dout * (a1 + b1) * s * (1 - s),  s = sigmoid(a2 + b2),
//              dbias = sum over rows of [da1 | da2]
//
// with a = [a1 | a2]: (rows, 2d), the product g @ [W1 | W2] before its bias b = [b1 | b2]:
// (2d,); u, out, dout: (rows, d). Each is one pass over memory (XLA:CPU ran the forward as
// two passes and the backward as three, plus a separate reduction for dbias). Rows are
// shared out over XLA's intra-op threads in fixed chunks; dbias sums each chunk in float32
// and the chunks in float64 in chunk order, so results do not depend on the thread count.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "parallel_rows.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using lru_native::ParallelRows;

constexpr int64_t kChunk = 256;  // rows per task

// exp(x) in float32 (Cephes' expf: range reduction by ln 2, degree-5 polynomial; about
// 1 ulp), written so that the compiler vectorises loops that call it (libm's expf is a call).
inline float Exp(float x) {
  x = std::min(std::max(x, -87.3f), 88.3f);  // NaN passes through both
  const float n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;  // round(x / ln 2)
  const float r = x - n * 0.693145751953125f - n * 1.42860682030941723212e-6f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const int32_t bits = __builtin_bit_cast(int32_t, p) + (static_cast<int32_t>(n) << 23);
  return __builtin_bit_cast(float, bits);
}

inline float Sigmoid(float x) { return 1.f / (1.f + Exp(-x)); }

void ForwardRow(const float* __restrict a, const float* __restrict bias,
                const float* __restrict u, float* __restrict out, int64_t d) {
  for (int64_t k = 0; k < d; ++k) {
    out[k] = u[k] + (a[k] + bias[k]) * Sigmoid(a[d + k] + bias[d + k]);
  }
}

void BackwardRow(const float* __restrict a, const float* __restrict bias,
                 const float* __restrict dout, float* __restrict da,
                 float* __restrict dbias, int64_t d) {
  for (int64_t k = 0; k < d; ++k) {
    const float s = Sigmoid(a[d + k] + bias[d + k]);
    const float d1 = dout[k] * s;
    const float d2 = dout[k] * (a[k] + bias[k]) * s * (1.f - s);
    da[k] = d1;
    da[d + k] = d2;
    dbias[k] += d1;
    dbias[d + k] += d2;
  }
}

// rows and d from u (or dout): (rows..., d), checked against a (rows..., 2d) and bias (2d).
ffi::Error GetRows(const ffi::Buffer<ffi::F32>& a, const ffi::Buffer<ffi::F32>& bias,
                   const ffi::Buffer<ffi::F32>& u, int64_t& rows, int64_t& d) {
  auto ud = u.dimensions();
  if (ud.size() == 0) return ffi::Error::InvalidArgument("glu_gate: u must be (..., d)");
  d = ud.back();
  rows = d ? u.element_count() / d : 0;
  if (a.element_count() != rows * 2 * d || bias.element_count() != 2 * d) {
    return ffi::Error::InvalidArgument("glu_gate: a must be (..., 2d) and bias (2d,)");
  }
  return ffi::Error::Success();
}

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a,
                       ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::F32> u,
                       ffi::ResultBuffer<ffi::F32> out) {
  int64_t rows, d;
  if (ffi::Error e = GetRows(a, bias, u, rows, d); e.failure()) return e;
  ParallelRows(pool, (rows + kChunk - 1) / kChunk, [&](int64_t c) {
    for (int64_t r = c * kChunk; r < std::min(rows, (c + 1) * kChunk); ++r) {
      ForwardRow(a.typed_data() + r * 2 * d, bias.typed_data(), u.typed_data() + r * d,
                 out->typed_data() + r * d, d);
    }
  });
  return ffi::Error::Success();
}

ffi::Error BackwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a,
                        ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::F32> dout,
                        ffi::ResultBuffer<ffi::F32> da, ffi::ResultBuffer<ffi::F32> dbias) {
  int64_t rows, d;
  if (ffi::Error e = GetRows(a, bias, dout, rows, d); e.failure()) return e;
  const int64_t chunks = (rows + kChunk - 1) / kChunk;
  std::vector<float> partial(chunks * 2 * d, 0.f);  // each chunk's dbias
  ParallelRows(pool, chunks, [&](int64_t c) {
    for (int64_t r = c * kChunk; r < std::min(rows, (c + 1) * kChunk); ++r) {
      BackwardRow(a.typed_data() + r * 2 * d, bias.typed_data(), dout.typed_data() + r * d,
                  da->typed_data() + r * 2 * d, partial.data() + c * 2 * d, d);
    }
  });
  for (int64_t k = 0; k < 2 * d; ++k) {
    double s = 0;
    for (int64_t c = 0; c < chunks; ++c) s += partial[c * 2 * d + k];
    dbias->typed_data()[k] = static_cast<float>(s);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(LruGluGateForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // a
                                  .Arg<ffi::Buffer<ffi::F32>>()   // bias
                                  .Arg<ffi::Buffer<ffi::F32>>()   // u
                                  .Ret<ffi::Buffer<ffi::F32>>()); // out

XLA_FFI_DEFINE_HANDLER_SYMBOL(LruGluGateBackward, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // a
                                  .Arg<ffi::Buffer<ffi::F32>>()   // bias
                                  .Arg<ffi::Buffer<ffi::F32>>()   // dout
                                  .Ret<ffi::Buffer<ffi::F32>>()   // da
                                  .Ret<ffi::Buffer<ffi::F32>>()); // dbias
