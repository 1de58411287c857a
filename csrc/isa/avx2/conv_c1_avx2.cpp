#pragma GCC target("avx2,fma")
// Direct AVX2 kernels for the first layer of an image CNN: few input channels, 3x3 filters, stride 1, no
// padding or dilation (padded images arrive as zero-bordered planes; conv_c1.cpp). There im2col + GEMM has a
// reduction of only 9 C, so the GEMM spends its time storing tiles and re-reading them for the epilogue;
// here every output is produced once, in a register.
//   forward:  x (C,H,W) of one image, w (K,C,3,3), b (K,) | None -> y (K,P,Q), P = H-2, Q = W-2,
//             y[k,p,q] = b[k] + sum_{c,r,s} w[k,c,r,s] x[c,p+r,q+s] (channel by channel), then relu /
//             leaky_relu in the register. Four filters at a time: per 8 outputs of a row, 9 C input vectors
//             (unaligned loads, L1) each feed 4 FMAs with the broadcast weights.
//   dw and pool2 take one channel (x (H,W), w (K,1,3,3)).
//   dw:       dw[k,r,s] = sum_{p,q} dy[k,p,q] x[p+r, q+s] for one image, into 9 vector accumulators per k
//             (8 lanes of partial sums over q, rows in order), reduced to float at the end of the image;
//             db[k] = sum_{p,q} dy[k,p,q] likewise in a 10th accumulator, when asked (one pass over dy).
//   pool2:    the forward followed by the 2x2 / stride 2 max pool (conv2d_act_maxpool_forward,
//   conv_pool.cpp):
//             two filters x two conv rows x 16 columns in eight accumulators, each accumulated in the
//             forward's order and activated the same way, then split into the four taps of 8 windows and
//             scanned as the pool does (pool_taps_avx2.h): the same values and indices, and no conv output
//             stored.
// Row tails (Q % 8): in the forward, the last full vector of a row at least 8 wide; otherwise (and in dw)
// masked loads and stores, so nothing past a row's end is read or written. pool2 likewise ends each pooled
// row with the 8 windows ending at its end (pooled rows at least 8 wide).
// Only <immintrin.h> and fixed-width headers are included (ODR safety, see gemm_avx2.cpp).
#include <immintrin.h>

#include <cstdint>

#include "isa/avx2/pool_taps_avx2.h"
#include "isa/avx2/avx2_common.h"

namespace cnnkern {
namespace avx2 {
namespace {

// KB filters x 8 outputs of row p at column q: masked loads and stores when kMasked (a row narrower than 8),
// plain ones otherwise; one instantiation each, so the full-vector loop has no branch inside.
// C channels: planes HW apart, filter k's taps of channel c at w + (k*C + c)*9, the channels added in order.
template <int KB, bool kMasked>
inline void forward_vec(const float* x0, int64_t W, int64_t C, int64_t HW, const float* w, const float* b,
                        float* dst, int64_t PQ, __m256i m, int act, __m256 alpha) {
  __m256 acc[KB];
#pragma GCC unroll 4
  for (int k = 0; k < KB; ++k) acc[k] = b ? _mm256_set1_ps(b[k]) : _mm256_setzero_ps();
  for (int64_t c = 0; c < C; ++c)
#pragma GCC unroll 3
    for (int r = 0; r < 3; ++r)
#pragma GCC unroll 3
      for (int s = 0; s < 3; ++s) {
        const float* src = x0 + c * HW + r * W + s;
        const __m256 xv = kMasked ? _mm256_maskload_ps(src, m) : _mm256_loadu_ps(src);
#pragma GCC unroll 4
        for (int k = 0; k < KB; ++k)
          acc[k] = _mm256_fmadd_ps(_mm256_broadcast_ss(w + (k * C + c) * 9 + r * 3 + s), xv, acc[k]);
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
void forward_block(const float* x, int64_t W, int64_t C, int64_t HW, const float* w, const float* b, float* y,
                   int64_t P, int64_t Q, int act, float alpha_s) {
  const __m256 alpha = _mm256_set1_ps(alpha_s);
  const int64_t PQ = P * Q;
  const __m256i m = tail_mask(Q < 8 ? Q : 8);
  for (int64_t p = 0; p < P; ++p) {
    const float* x0 = x + p * W;
    float* yp = y + p * Q;
    if (Q < 8) {
      forward_vec<KB, true>(x0, W, C, HW, w, b, yp, PQ, m, act, alpha);
      continue;
    }
    for (int64_t q = 0; q < Q; q += 8) {
      const int64_t qq = q + 8 <= Q ? q : Q - 8;
      forward_vec<KB, false>(x0 + qq, W, C, HW, w, b, yp + qq, PQ, m, act, alpha);
    }
  }
}

// Pooled row i (conv rows 2i, 2i+1), windows j0 .. j0+7 (conv columns 2·j0 .. 2·j0+15) for KB filters.
template <int KB, bool kArg>
inline void pool2_block(const float* x, int64_t W, const float* w, const float* b, int64_t Q, int64_t i,
                        int64_t j0, int act, __m256 alpha, float* y, int64_t* arg, int64_t PQ2, int64_t Q2) {
  __m256 acc[KB][2][2];  // [filter][conv row][16 columns: low, high 8]
#pragma GCC unroll 2
  for (int k = 0; k < KB; ++k) {
    const __m256 bk = b ? _mm256_set1_ps(b[k]) : _mm256_setzero_ps();
    acc[k][0][0] = acc[k][0][1] = acc[k][1][0] = acc[k][1][1] = bk;
  }
  const float* x0 = x + 2 * i * W + 2 * j0;
  // input row ir feeds conv row 2i with filter row ir and conv row 2i+1 with filter row ir-1: per accumulator
  // the taps still come in the forward's order (r, then s)
#pragma GCC unroll 4
  for (int ir = 0; ir < 4; ++ir)
#pragma GCC unroll 3
    for (int s = 0; s < 3; ++s) {
      const __m256 lo = _mm256_loadu_ps(x0 + ir * W + s), hi = _mm256_loadu_ps(x0 + ir * W + s + 8);
#pragma GCC unroll 2
      for (int k = 0; k < KB; ++k) {
        if (ir < 3) {
          const __m256 wv = _mm256_broadcast_ss(w + k * 9 + ir * 3 + s);
          acc[k][0][0] = _mm256_fmadd_ps(wv, lo, acc[k][0][0]);
          acc[k][0][1] = _mm256_fmadd_ps(wv, hi, acc[k][0][1]);
        }
        if (ir > 0) {
          const __m256 wv = _mm256_broadcast_ss(w + k * 9 + (ir - 1) * 3 + s);
          acc[k][1][0] = _mm256_fmadd_ps(wv, lo, acc[k][1][0]);
          acc[k][1][1] = _mm256_fmadd_ps(wv, hi, acc[k][1][1]);
        }
      }
    }
  const __m256i lane2 = _mm256_setr_epi64x(0, 2, 4, 6), one = _mm256_set1_epi64x(1);
  const __m256i width = _mm256_set1_epi64x(Q), zero = _mm256_setzero_si256();
#pragma GCC unroll 2
  for (int k = 0; k < KB; ++k) {
    __m256 v0, v1, v2, v3, best;
    __m256i tap;
    split_even_odd(activate(acc[k][0][0], act, alpha), activate(acc[k][0][1], act, alpha), &v0, &v1);
    split_even_odd(activate(acc[k][1][0], act, alpha), activate(acc[k][1][1], act, alpha), &v2, &v3);
    max_of_taps(v0, v1, v2, v3, &best, &tap);
    const int64_t o = k * PQ2 + i * Q2 + j0;
    _mm256_storeu_ps(y + o, best);
    if (!kArg) continue;
    // index in the conv plane = 2i·Q + 2·(j0 + lane) + (tap & 1) + (tap >> 1)·Q, four lanes at a time
    for (int half = 0; half < 2; ++half) {
      const __m256i t =
          _mm256_cvtepi32_epi64(half ? _mm256_extracti128_si256(tap, 1) : _mm256_castsi256_si128(tap));
      const __m256i down = _mm256_and_si256(_mm256_sub_epi64(zero, _mm256_srli_epi64(t, 1)), width);
      __m256i idx = _mm256_add_epi64(_mm256_set1_epi64x(2 * i * Q + 2 * (j0 + 4 * half)), lane2);
      idx = _mm256_add_epi64(_mm256_add_epi64(idx, _mm256_and_si256(t, one)), down);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(arg + o + 4 * half), idx);
    }
  }
}

template <int KB, bool kArg>
void pool2_filters(const float* x, int64_t W, const float* w, const float* b, int64_t Q, int64_t P2,
                   int64_t Q2, int act, float alpha_s, float* y, int64_t* arg) {
  const __m256 alpha = _mm256_set1_ps(alpha_s);
  for (int64_t i = 0; i < P2; ++i)
    for (int64_t j = 0; j < Q2; j += 8) {
      const int64_t j0 = j + 8 <= Q2 ? j : Q2 - 8;  // the row's last 8 windows may overlap the previous 8
      pool2_block<KB, kArg>(x, W, w, b, Q, i, j0, act, alpha, y, arg, P2 * Q2, Q2);
    }
}

}  // namespace

void conv_c1_3x3_forward(const float* x, int64_t H, int64_t W, int64_t C, const float* w, const float* b,
                         float* y, int64_t K, int act, float alpha) {
  const int64_t P = H - 2, Q = W - 2, PQ = P * Q, HW = H * W, KS = C * 9;
  int64_t k = 0;
  for (; k + 4 <= K; k += 4)
    forward_block<4>(x, W, C, HW, w + k * KS, b ? b + k : nullptr, y + k * PQ, P, Q, act, alpha);
  for (; k < K; ++k)
    forward_block<1>(x, W, C, HW, w + k * KS, b ? b + k : nullptr, y + k * PQ, P, Q, act, alpha);
}

// act: 0 none, 1 relu, 2 leaky_relu (as the forward). P2 = P / 2 >= 1 and 8 <= Q2 = Q / 2 (floor: an odd last
// conv row or column is in no window); y (K,P2,Q2), arg (K,P2,Q2) or null.
void conv_c1_3x3_pool2(const float* x, int64_t H, int64_t W, const float* w, const float* b, int64_t K,
                       int act, float alpha, float* y, int64_t* arg) {
  const int64_t P = H - 2, Q = W - 2, P2 = P / 2, Q2 = Q / 2, PQ2 = P2 * Q2;
  int64_t k = 0;
  for (; k + 2 <= K; k += 2) {
    const float* bk = b ? b + k : nullptr;
    if (arg)
      pool2_filters<2, true>(x, W, w + k * 9, bk, Q, P2, Q2, act, alpha, y + k * PQ2, arg + k * PQ2);
    else
      pool2_filters<2, false>(x, W, w + k * 9, bk, Q, P2, Q2, act, alpha, y + k * PQ2, nullptr);
  }
  if (k < K) {
    const float* bk = b ? b + k : nullptr;
    if (arg)
      pool2_filters<1, true>(x, W, w + k * 9, bk, Q, P2, Q2, act, alpha, y + k * PQ2, arg + k * PQ2);
    else
      pool2_filters<1, false>(x, W, w + k * 9, bk, Q, P2, Q2, act, alpha, y + k * PQ2, nullptr);
  }
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
