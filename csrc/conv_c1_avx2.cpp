#pragma GCC target("avx2,fma")
// Direct AVX2 kernels for the first layer of an image CNN: one input channel, 3x3 filters, stride 1, no
// padding or dilation (conv_c1.h). There im2col + GEMM has a reduction of only 9, so the GEMM spends its
// time storing tiles and re-reading them for the epilogue; here every output is produced once, in a register.
//   forward:  x (H,W) of one image, w (K,1,3,3), b (K,) | None -> y (K,P,Q), P = H-2, Q = W-2,
//             y[k,p,q] = b[k] + sum_{r,s} w[k,r,s] x[p+r, q+s], then relu / leaky_relu in the register.
//             Four filters at a time: per 8 outputs of a row, 9 input vectors (unaligned loads, L1) each feed
//             4 FMAs with the broadcast weights.
//   dw:       dw[k,r,s] = sum_{p,q} dy[k,p,q] x[p+r, q+s] for one image, into 9 vector accumulators per k
//             (8 lanes of partial sums over q, rows in order), reduced to float at the end of the image;
//             db[k] = sum_{p,q} dy[k,p,q] likewise in a 10th accumulator, when asked (one pass over dy).
// Row tails (Q % 8): in the forward, the last full vector of a row at least 8 wide; otherwise (and in dw)
// masked loads and stores, so nothing past a row's end is read or written.
// Only <immintrin.h> and fixed-width headers are included (ODR safety, see gemm_avx2.cpp).
#include <immintrin.h>

#include <cstdint>

namespace cnnkern {
namespace avx2 {
namespace {

inline __m256i tail_mask(int64_t n) {  // the first n (1..8) lanes
  alignas(32) static const int32_t t[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t + 8 - n));
}

// act: 0 none, 1 relu (x < 0 ? 0 : x, NaN kept), 2 leaky_relu (x > 0 ? x : alpha*x).
inline __m256 activate(__m256 v, int act, __m256 alpha) {
  if (act == 1) return _mm256_blendv_ps(v, _mm256_setzero_ps(), _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
  if (act == 2) return _mm256_blendv_ps(_mm256_mul_ps(v, alpha), v, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ));
  return v;
}

// KB filters x 8 outputs of row p at column q: masked loads and stores when kMasked (a row narrower than 8),
// plain ones otherwise; one instantiation each, so the full-vector loop has no branch inside.
template <int KB, bool kMasked>
inline void forward_vec(const float* x0, int64_t W, const float* w, const float* b, float* dst, int64_t PQ,
                        __m256i m, int act, __m256 alpha) {
  __m256 acc[KB];
#pragma GCC unroll 4
  for (int k = 0; k < KB; ++k) acc[k] = b ? _mm256_set1_ps(b[k]) : _mm256_setzero_ps();
#pragma GCC unroll 3
  for (int r = 0; r < 3; ++r)
#pragma GCC unroll 3
    for (int s = 0; s < 3; ++s) {
      const float* src = x0 + r * W + s;
      const __m256 xv = kMasked ? _mm256_maskload_ps(src, m) : _mm256_loadu_ps(src);
#pragma GCC unroll 4
      for (int k = 0; k < KB; ++k) acc[k] = _mm256_fmadd_ps(_mm256_broadcast_ss(w + k * 9 + r * 3 + s), xv, acc[k]);
    }
#pragma GCC unroll 4
  for (int k = 0; k < KB; ++k) {
    const __m256 v = activate(acc[k], act, alpha);
    if (kMasked)
      _mm256_maskstore_ps(dst + k * PQ, m, v);
    else
      _mm256_storeu_ps(dst + k * PQ, v);
  }
}

// A row tail (Q % 8) of a row at least 8 wide is the full vector ending at the row's end: its overlap with
// the previous vector stores the same values again (measured: the loop with a masked tail compiled to
// branches and spills in every step, 17 us per image of the classic CNN's first layer).
template <int KB>
void forward_block(const float* x, int64_t W, const float* w, const float* b, float* y, int64_t P, int64_t Q,
                   int act, float alpha_s) {
  const __m256 alpha = _mm256_set1_ps(alpha_s);
  const int64_t PQ = P * Q;
  const __m256i m = tail_mask(Q < 8 ? Q : 8);
  for (int64_t p = 0; p < P; ++p) {
    const float* x0 = x + p * W;
    float* yp = y + p * Q;
    if (Q < 8) {
      forward_vec<KB, true>(x0, W, w, b, yp, PQ, m, act, alpha);
      continue;
    }
    for (int64_t q = 0; q < Q; q += 8) {
      const int64_t qq = q + 8 <= Q ? q : Q - 8;
      forward_vec<KB, false>(x0 + qq, W, w, b, yp + qq, PQ, m, act, alpha);
    }
  }
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace

void conv_c1_3x3_forward(const float* x, int64_t H, int64_t W, const float* w, const float* b, float* y, int64_t K,
                         int act, float alpha) {
  const int64_t P = H - 2, Q = W - 2, PQ = P * Q;
  int64_t k = 0;
  for (; k + 4 <= K; k += 4) forward_block<4>(x, W, w + k * 9, b ? b + k : nullptr, y + k * PQ, P, Q, act, alpha);
  for (; k < K; ++k) forward_block<1>(x, W, w + k * 9, b ? b + k : nullptr, y + k * PQ, P, Q, act, alpha);
}

void conv_c1_3x3_dw(const float* x, int64_t H, int64_t W, const float* dy, int64_t K, float* dw, float* db) {
  const int64_t P = H - 2, Q = W - 2, PQ = P * Q, full = Q / 8 * 8;
  const __m256i m = tail_mask(Q - full > 0 ? Q - full : 8);
  for (int64_t k = 0; k < K; ++k) {
    const float* dk = dy + k * PQ;
    __m256 acc[9], accb = _mm256_setzero_ps();
#pragma GCC unroll 9
    for (int t = 0; t < 9; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t p = 0; p < P; ++p) {
      const float* x0 = x + p * W;
      for (int64_t q = 0; q < full; q += 8) {  // full vectors: plain loads, no branch inside
        const __m256 d = _mm256_loadu_ps(dk + p * Q + q);
        accb = _mm256_add_ps(accb, d);
#pragma GCC unroll 3
        for (int r = 0; r < 3; ++r)
#pragma GCC unroll 3
          for (int s = 0; s < 3; ++s)
            acc[r * 3 + s] = _mm256_fmadd_ps(d, _mm256_loadu_ps(x0 + r * W + q + s), acc[r * 3 + s]);
      }
      if (full < Q) {  // the row tail: masked loads (zeros past the row's end)
        const __m256 d = _mm256_maskload_ps(dk + p * Q + full, m);
        accb = _mm256_add_ps(accb, d);
#pragma GCC unroll 3
        for (int r = 0; r < 3; ++r)
#pragma GCC unroll 3
          for (int s = 0; s < 3; ++s)
            acc[r * 3 + s] = _mm256_fmadd_ps(d, _mm256_maskload_ps(x0 + r * W + full + s, m), acc[r * 3 + s]);
      }
    }
#pragma GCC unroll 9
    for (int t = 0; t < 9; ++t) dw[k * 9 + t] = hsum(acc[t]);
    if (db) db[k] = hsum(accb);
  }
}

}  // namespace avx2
}  // namespace cnnkern
