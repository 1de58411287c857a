// gemm.cuh: the shared-memory tiled GEMM core behind every convolution and dense kernel.
//
//   C (M x Nc) = A (M x Kd) . B (Kd x Nc), reduction index k in [k_begin, k_end)
//
// "Implicit" GEMM: A and B are never formed. Each operand is read through a loader, a small struct that
// maps (row or column, k) to an address in the real tensor (the im2col gather for a convolution input, a
// strided weight access, ...) and returns 0 for taps that fall into zero padding. The result goes through
// an epilogue struct that stores C(m, n) wherever it belongs (bias + activation, a split-K workspace...).
//
// Tiling: a block of 256 threads computes a 64 x 64 tile of C. The reduction advances 16 at a time: each
// thread loads 4 elements of the 64 x 16 A tile and 4 of the 16 x 64 B tile into registers, stores them to
// shared memory, and while the block computes on that tile the next tile's 8 global loads are already in
// flight (register prefetch). Register blocking: thread (ty, tx) = (t / 16, t % 16) accumulates the 4 x 4
// outputs at rows ty + 16i and columns tx + 16j; per k step it reads 4 A values (two distinct addresses per
// warp: broadcasts) and 4 B values (16 consecutive floats per half warp: conflict-free) for 16 FMAs, and the
// interleaved columns make the final stores coalesced.
//
// Loader interface (LA for A with rows m, LB for B with columns n; "edge" is m or n):
//   static const bool kfast;              // true: memory is contiguous along k, so consecutive threads
//                                         // take consecutive k when loading; false: along the edge
//   struct Pos;  Pos at(int edge) const;  // per-row/column state, computed once per block (divisions here)
//   float load(const Pos&, int k) const;  // the element; only called with edge < size and k < k_end
// Epilogue interface: struct Pos; Pos at(int n) const; void store(int m, const Pos&, float acc) const.
#pragma once
#include "common.cuh"

#define GEMM_BM 64
#define GEMM_BN 64
#define GEMM_BK 16
#define GEMM_THREADS 256

// Slot l (0..3) of thread t in a 64 x 16 operand tile: its position along the 64-wide edge and the 16-deep
// reduction. kfast: t%16 walks k (coalesced when memory runs along k); else t%64 walks the edge. Each of
// the 1024 (edge, k) pairs is owned by exactly one (t, l).
template <bool KFAST>
struct TileSlot {
  __device__ static int edge(int t, int l) {
    return KFAST ? t / GEMM_BK + l * (GEMM_THREADS / GEMM_BK) : t % GEMM_BM;
  }
  __device__ static int depth(int t, int l) {
    return KFAST ? t % GEMM_BK : t / GEMM_BM + l * (GEMM_THREADS / GEMM_BM);
  }
};

template <class LA, class LB, class EP>
__device__ __forceinline__ void gemm_tile(const LA& la, const LB& lb, const EP& ep, int M, int Nc,
                                          int k_begin, int k_end) {
  // +1 column of padding: kfast slots store 16 different k rows per warp, which would otherwise all hit
  // the same bank
  __shared__ float sA[GEMM_BK][GEMM_BM + 1];
  __shared__ float sB[GEMM_BK][GEMM_BN + 1];
  const int t = threadIdx.x, tx = t % 16, ty = t / 16;
  const int m0 = blockIdx.y * GEMM_BM, n0 = blockIdx.x * GEMM_BN;

  typename LA::Pos pa[4];
  typename LB::Pos pb[4];
  bool oka[4], okb[4];
#pragma unroll
  for (int l = 0; l < 4; ++l) {
    const int m = m0 + TileSlot<LA::kfast>::edge(t, l);
    const int n = n0 + TileSlot<LB::kfast>::edge(t, l);
    oka[l] = m < M;
    okb[l] = n < Nc;
    pa[l] = la.at(oka[l] ? m : m0);
    pb[l] = lb.at(okb[l] ? n : n0);
  }

  float ra[4], rb[4];
  auto fetch = [&](int k0) {
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const int ka = k0 + TileSlot<LA::kfast>::depth(t, l);
      const int kb = k0 + TileSlot<LB::kfast>::depth(t, l);
      ra[l] = (oka[l] && ka < k_end) ? la.load(pa[l], ka) : 0.f;
      rb[l] = (okb[l] && kb < k_end) ? lb.load(pb[l], kb) : 0.f;
    }
  };

  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;

  if (k_begin < k_end) fetch(k_begin);
  for (int k0 = k_begin; k0 < k_end; k0 += GEMM_BK) {
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      sA[TileSlot<LA::kfast>::depth(t, l)][TileSlot<LA::kfast>::edge(t, l)] = ra[l];
      sB[TileSlot<LB::kfast>::depth(t, l)][TileSlot<LB::kfast>::edge(t, l)] = rb[l];
    }
    __syncthreads();
    if (k0 + GEMM_BK < k_end) fetch(k0 + GEMM_BK);
#pragma unroll
    for (int kk = 0; kk < GEMM_BK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = sA[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = sB[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }

#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int n = n0 + tx + 16 * j;
    if (n >= Nc) continue;
    const typename EP::Pos pe = ep.at(n);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int m = m0 + ty + 16 * i;
      if (m < M) ep.store(m, pe, acc[i][j]);
    }
  }
}

// Split-K: blockIdx.z % splits picks the chunk [split * chunk, (split + 1) * chunk) of the reduction
// (chunk a multiple of GEMM_BK, chosen by the host). The partial tiles go to a workspace of `splits`
// copies of the output, summed in split order by sum_splits (deterministic, no atomics).
extern "C" __global__ void sum_splits(const float* __restrict__ ws, float* __restrict__ out, i64 total,
                                      i64 splits) {
  GRID_STRIDE_LOOP(i, total) {
    float s = 0.f;
    for (i64 p = 0; p < splits; ++p) s += ws[p * total + i];
    out[i] = s;
  }
}
