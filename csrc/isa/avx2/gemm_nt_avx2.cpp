#pragma GCC target("avx2,fma")
// AVX2 "NT" GEMM block: C (=|+=) A · B^T with A (m, kc) and B (n, kc) both read in place along k, for the
// dense forward (y = x · w^T, w as PyTorch stores it). The packed GEMM would first copy all of w into
// slivers: a full extra pass over the largest operand on every call, which costs more than the
// multiplication when the batch is small, and whose 16 / 32-wide slivers waste most of the work on a
// 10-unit output layer. Here each output is a dot product over k: a 4 x 3 tile keeps 12 ymm accumulators
// of 8 k-lanes each, fed by 4 rows of A and 3 of B (7 loads per 12 FMAs), and is reduced across its lanes
// once per block of k. 12 + 3 B vectors + 1 A vector fill the 16 registers exactly: the 3 x 4 tile this
// replaced needed 17 (0.81-0.99x its time on dense layers at batch 8-48, Zen 4, same bits).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "isa/avx2/avx2_common.h"

namespace cnnkern {
namespace {

using avx2::hsum;

// One MI x NJ tile (MI <= 3, NJ <= 4): the lanes of each accumulator hold the partial sums of k = lane
// mod 8, added up in one fixed order, so a result depends on neither the tiling nor the thread count.
template <int MI, int NJ>
void tile(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t kc, float* c, int64_t ldc,
          bool accumulate) {
  __m256 acc[MI][NJ];
  for (int i = 0; i < MI; ++i)
    for (int j = 0; j < NJ; ++j) acc[i][j] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= kc; k += 8) {
    __m256 bv[NJ];
    for (int j = 0; j < NJ; ++j) bv[j] = _mm256_loadu_ps(b + j * ldb + k);
    for (int i = 0; i < MI; ++i) {
      const __m256 av = _mm256_loadu_ps(a + i * lda + k);
      for (int j = 0; j < NJ; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  if (k < kc) {  // the k tail: masked loads read zeros past kc
    const __m256i mask = avx2::tail_mask(kc - k);
    __m256 bv[NJ];
    for (int j = 0; j < NJ; ++j) bv[j] = _mm256_maskload_ps(b + j * ldb + k, mask);
    for (int i = 0; i < MI; ++i) {
      const __m256 av = _mm256_maskload_ps(a + i * lda + k, mask);
      for (int j = 0; j < NJ; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MI; ++i)
    for (int j = 0; j < NJ; ++j) {
      const float s = hsum(acc[i][j]);
      c[i * ldc + j] = accumulate ? c[i * ldc + j] + s : s;
    }
}

// The walk over the output tiles: row groups of MI, each a run of NJ-column tiles, the edge tiles smaller,
// every tile size a compile-time pair so that its accumulators stay in registers.
template <int V>
struct TileDim {
  static constexpr int value = V;
};

// f(TileDim<mi>, TileDim<nj>) for the compile-time pair equal to (mr, nr), 1 <= mr <= M, 1 <= nr <= N.
template <int M, int N, typename F>
inline void with_tile_size(int64_t mr, int64_t nr, F&& f) {
  if constexpr (M > 1) {
    if (mr < M) return with_tile_size<M - 1, N>(mr, nr, f);
  }
  if constexpr (N > 1) {
    if (nr < N) return with_tile_size<M, N - 1>(mr, nr, f);
  }
  f(TileDim<M>{}, TileDim<N>{});
}

// tile(TileDim<mi>, TileDim<nj>, i, j) for the tiles covering m x n, row group by row group.
template <int MI, int NJ, typename Tile>
inline void nt_walk(int64_t m, int64_t n, Tile&& tile) {
  for (int64_t i = 0; i < m; i += MI)
    for (int64_t j = 0; j < n; j += NJ)
      with_tile_size<MI, NJ>(m - i < MI ? m - i : MI, n - j < NJ ? n - j : NJ,
                             [&](auto mi, auto nj) { tile(mi, nj, i, j); });
}

}  // namespace

// C[i*ldc + j] (=|+=) sum_{k < kc} a[i*lda + k] * b[j*ldb + k] for i < m, j < n.
void sgemm_nt_block_avx2(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t m, int64_t n,
                         int64_t kc, float* c, int64_t ldc, bool accumulate) {
  nt_walk<4, 3>(m, n, [&](auto mi, auto nj, int64_t i, int64_t j) {
    tile<decltype(mi)::value, decltype(nj)::value>(a + i * lda, lda, b + j * ldb, ldb, kc, c + i * ldc + j,
                                                   ldc, accumulate);
  });
}

}  // namespace cnnkern
