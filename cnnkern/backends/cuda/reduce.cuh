// reduce.cuh: deterministic per-channel sums, used for the conv and dense bias gradients.
//
//   x (N,K,PQ) -> out (K,): out[k] = sum over (n, pq) of x[n,k,pq]   (dense: PQ = 1)
//
// Two kernels: grid (K, splits) blocks each sum one chunk of a channel's N*PQ values (serial per-thread
// sums, then block_sum's fixed tree), then one thread per channel adds the chunks in order. Splitting keeps
// every SM busy when K is small; the order never depends on timing, so results are bitwise reproducible.
#pragma once
#include "common.cuh"

// x (N,K,PQ): partial[k][chunk] = sum of x[n,k,:] over the chunk's slice of the N*PQ values of channel k.
// grid (K, splits), blockDim a multiple of 32. Serial per-thread sums + block_sum: fixed order.
extern "C" __global__ void channel_partial_sum(const float* __restrict__ x, float* __restrict__ partial,
                                               i64 N, i64 K, i64 PQ, i64 chunk) {
  __shared__ float scratch[33];
  const i64 k = blockIdx.x;
  const ChunkRange r = chunk_range(N * PQ, chunk);
  float acc = 0.f;
  for (i64 j = r.begin + threadIdx.x; j < r.end; j += blockDim.x) {
    const i64 img = j / PQ, pq = j - img * PQ;
    acc += x[(img * K + k) * PQ + pq];
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) partial[k * gridDim.y + blockIdx.y] = acc;
}

// out[k] = sum over splits of partial[k][split], in split order; one thread per channel
extern "C" __global__ void sum_partials(const float* __restrict__ partial, float* __restrict__ out, i64 K,
                                        i64 splits) {
  GRID_STRIDE_LOOP(k, K) {
    float s = 0.f;
    for (i64 p = 0; p < splits; ++p) s += partial[k * splits + p];
    out[k] = s;
  }
}
