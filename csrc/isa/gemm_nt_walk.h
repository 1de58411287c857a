// The NT GEMM blocks' walk over their output tiles (isa/avx2/gemm_nt_avx2.cpp,
// isa/avx512/gemm_nt_avx512.cpp): row groups of MI, each a run of NJ-column tiles, the edge tiles smaller,
// every tile size a compile-time pair so that its accumulators stay in registers. Included by files compiled
// for different instruction sets: everything here is in an anonymous namespace and uses no standard library
// code (a library function instantiated under one file's target could be linked into another's callers).
#pragma once

#include <cstdint>

namespace cnnkern {
namespace {

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
}  // namespace cnnkern
