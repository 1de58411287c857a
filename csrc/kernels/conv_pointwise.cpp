// Pointwise conv backward pieces (conv_pointwise.h): dw on the in-place dot-product kernels, and db.
#include "kernels/conv_pointwise.h"

#include <vector>

#include "kernels/gemm.h"
#include "runtime/common.h"

namespace cnnkern {

bool conv_pointwise_dw_applies(const ConvGeom& g) {
#ifdef CNNKERN_X86
  return g.pointwise() && g.G == 1 && simd_level() != Simd::scalar;
#else
  (void)g;
  return false;
#endif
}

void conv_pointwise_dw(const float* dy, const float* x, float* dw, const ConvGeom& g) {
#ifdef CNNKERN_X86
  const int64_t K = g.K, C = g.C, PQ = g.PQ(), size = K * C;
  const int64_t chunks = reduction_chunks(g.N, PQ, size), nt = num_threads();
  thread_local std::vector<float> partbuf;
  float* parts = chunks > 1 ? grow(partbuf, (chunks - 1) * size) : nullptr;
  // Rows [k0, k1) of chunk c's partial; each element's sum is the same whichever rows go together.
  auto rows = [&](int64_t c, int64_t k0, int64_t k1) {
    const int64_t n0 = g.N * c / chunks, n1 = g.N * (c + 1) / chunks;
    float* part = c == 0 ? dw : parts + (c - 1) * size;
    avx2::pw_dot_rows(n1 - n0, PQ, dy + (n0 * K + k0) * PQ, K * PQ, PQ, k1 - k0, x + n0 * C * PQ, C * PQ, PQ,
                      C, part + k0 * C, C);
  };
  if (chunks >= nt)
    parallel_chunks(chunks, [&](int64_t c) { rows(c, 0, K); });
  else  // fewer chunks than threads: each chunk's rows split over the threads
    for (int64_t c = 0; c < chunks; ++c) parallel_for(K, [&](int64_t k0, int64_t k1) { rows(c, k0, k1); });
  if (parts)
    run_elementwise(size, [&](int64_t i0, int64_t i1) {
      for (int64_t c = 1; c < chunks; ++c) {
        const float* part = parts + (c - 1) * size;
        for (int64_t i = i0; i < i1; ++i) dw[i] += part[i];
      }
    });
#else
  (void)dy, (void)x, (void)dw, (void)g;
#endif
}

void conv_bias_grad(const float* dy, float* db, const ConvGeom& g) {
  const int64_t K = g.K, PQ = g.PQ();
  parallel_for(K, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      double sum;
#ifdef CNNKERN_X86
      if (simd_level() != Simd::scalar) {
        avx2::row_sums_f64(g.N, PQ, dy + k * PQ, K * PQ, &sum);
        db[k] = static_cast<float>(sum);
        continue;
      }
#endif
      double s[8] = {};
      for (int64_t n = 0; n < g.N; ++n) {
        const float* d = dy + (n * K + k) * PQ;
        int64_t i = 0;
        for (; i + 8 <= PQ; i += 8)
          for (int64_t l = 0; l < 8; ++l) s[l] += d[i + l];
        for (; i < PQ; ++i) s[i % 8] += d[i];
      }
      sum = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
      db[k] = static_cast<float>(sum);
    }
  });
}

}  // namespace cnnkern
