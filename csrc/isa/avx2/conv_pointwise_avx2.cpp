// AVX2 kernels of the pointwise (1x1) conv backward (conv_pointwise.h): dw as dot products of dy rows with x
// rows, both read in place along the pixels (no packing), and db's row sums in double. Only intrinsics and
// fixed-width integers here (see gemm_avx2.cpp on ODR safety).
#pragma GCC target("avx2,fma")
#include "isa/avx2/avx2_common.h"

namespace cnnkern {
namespace avx2 {

namespace {

// The fixed lane order of every dot product: ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)).
inline float lane_sum(__m256 v) {
  alignas(32) float l[8];
  _mm256_store_ps(l, v);
  return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

// An MI x MJ tile: MI*MJ accumulators (at most 12) + MI a vectors + one b vector fit the 16 registers.
// Each element's 8 lanes take the terms of pixel p in lane p % 8, image by image, pixel by pixel (the tail
// masked to zeros, which add nothing): the same bits whatever tile computed it.
template <int MI, int MJ>
void tile(int64_t nimg, int64_t len, const float* a, int64_t a_img, int64_t a_row, const float* b,
          int64_t b_img, int64_t b_row, float* c, int64_t ldc) {
  __m256 acc[MI][MJ];
  for (int i = 0; i < MI; ++i)
    for (int j = 0; j < MJ; ++j) acc[i][j] = _mm256_setzero_ps();
  const int64_t full = len - len % 8;
  const __m256i m = tail_mask(len % 8);
  for (int64_t n = 0; n < nimg; ++n, a += a_img, b += b_img) {
    for (int64_t p = 0; p < full; p += 8) {
      __m256 av[MI];
      for (int i = 0; i < MI; ++i) av[i] = _mm256_loadu_ps(a + i * a_row + p);
      for (int j = 0; j < MJ; ++j) {
        const __m256 bv = _mm256_loadu_ps(b + j * b_row + p);
        for (int i = 0; i < MI; ++i) acc[i][j] = _mm256_fmadd_ps(av[i], bv, acc[i][j]);
      }
    }
    if (full < len) {
      __m256 av[MI];
      for (int i = 0; i < MI; ++i) av[i] = _mm256_maskload_ps(a + i * a_row + full, m);
      for (int j = 0; j < MJ; ++j) {
        const __m256 bv = _mm256_maskload_ps(b + j * b_row + full, m);
        for (int i = 0; i < MI; ++i) acc[i][j] = _mm256_fmadd_ps(av[i], bv, acc[i][j]);
      }
    }
  }
  for (int i = 0; i < MI; ++i)
    for (int j = 0; j < MJ; ++j) c[i * ldc + j] = lane_sum(acc[i][j]);
}

template <int MI>
void tile_row(int64_t mj, int64_t nimg, int64_t len, const float* a, int64_t a_img, int64_t a_row,
              const float* b, int64_t b_img, int64_t b_row, float* c, int64_t ldc) {
  switch (mj) {
    case 1:
      return tile<MI, 1>(nimg, len, a, a_img, a_row, b, b_img, b_row, c, ldc);
    case 2:
      return tile<MI, 2>(nimg, len, a, a_img, a_row, b, b_img, b_row, c, ldc);
    case 3:
      return tile<MI, 3>(nimg, len, a, a_img, a_row, b, b_img, b_row, c, ldc);
    default:
      return tile<MI, 4>(nimg, len, a, a_img, a_row, b, b_img, b_row, c, ldc);
  }
}

}  // namespace

void pw_dot_rows(int64_t nimg, int64_t len, const float* a, int64_t a_img, int64_t a_row, int64_t ma,
                 const float* b, int64_t b_img, int64_t b_row, int64_t mb, float* c, int64_t ldc) {
  for (int64_t j0 = 0; j0 < mb; j0 += 4) {  // 4 b rows (x: the fewer rows) per tile, 3 a rows
    const int64_t mj = mb - j0 < 4 ? mb - j0 : 4;
    const float* bj = b + j0 * b_row;
    for (int64_t i0 = 0; i0 < ma; i0 += 3) {
      const float* ai = a + i0 * a_row;
      float* ct = c + i0 * ldc + j0;
      switch (ma - i0) {
        case 1:
          tile_row<1>(mj, nimg, len, ai, a_img, a_row, bj, b_img, b_row, ct, ldc);
          break;
        case 2:
          tile_row<2>(mj, nimg, len, ai, a_img, a_row, bj, b_img, b_row, ct, ldc);
          break;
        default:
          tile_row<3>(mj, nimg, len, ai, a_img, a_row, bj, b_img, b_row, ct, ldc);
      }
    }
  }
}

void row_sums_f64(int64_t nimg, int64_t len, const float* a, int64_t a_img, double* out) {
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();  // lanes 0-3 and 4-7 of the scalar sums
  const int64_t full = len - len % 8;
  const __m256i m = tail_mask(len % 8);
  for (int64_t n = 0; n < nimg; ++n, a += a_img) {
    for (int64_t p = 0; p < full; p += 8) {
      const __m256 v = _mm256_loadu_ps(a + p);
      lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
      hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    if (full < len) {
      const __m256 v = _mm256_maskload_ps(a + full, m);
      lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
      hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
  }
  alignas(32) double s[8];
  _mm256_store_pd(s, lo);
  _mm256_store_pd(s + 4, hi);
  *out = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

}  // namespace avx2
}  // namespace cnnkern
