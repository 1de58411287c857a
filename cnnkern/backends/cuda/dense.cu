// dense.cu: fully connected layer, forward and backward, as GEMMs over gemm.cuh.
//
//   forward  x (N,I), w (O,I), b (O,) -> y (N,O):   y[n,o] = act(b[o] + sum_i x[n,i] w[o,i])
//   backward dy (N,O) -> dx (N,I) = dy . w,  dw (O,I) = dy^T . x (split over N),  db (O,) = column sums of dy
//            (db: channel_partial_sum / sum_partials from reduce.cuh with PQ = 1)
// All matrices are row-major; the host checks every dimension fits in 31 bits.
#include "common.cuh"
#include "gemm.cuh"
#include "reduce.cuh"

// A row-major matrix read along its rows: A(m, k) = a[m*ld + k] (k contiguous)
struct RowsK {
  static const bool kfast = true;
  const float* a;
  int ld;
  struct Pos {
    const float* row;
  };
  __device__ Pos at(int m) const { return Pos{a + (i64)m * ld}; }
  __device__ float load(const Pos& p, int k) const { return p.row[k]; }
};

// A row-major matrix read down its columns: A(e, k) = a[k*ld + e] (the edge index e contiguous)
struct ColsK {
  static const bool kfast = false;
  const float* a;
  int ld;
  struct Pos {
    const float* col;
  };
  __device__ Pos at(int e) const { return Pos{a + e}; }
  __device__ float load(const Pos& p, int k) const { return p.col[(i64)k * ld]; }
};

// out[m*ld + n] = act(acc + b[n])
struct RowMajorStore {
  float* out;
  const float* b;
  int ld, has_bias, act;
  float alpha;
  struct Pos {
    int n;
    float bias;
  };
  __device__ Pos at(int n) const { return Pos{n, has_bias ? b[n] : 0.f}; }
  __device__ void store(int m, const Pos& p, float acc) const {
    out[(i64)m * ld + p.n] = activate(has_bias ? acc + p.bias : acc, act, alpha);
  }
};

// y (N,O): C[n][o] with A = x (N x I, along rows), B(i, o) = w[o][i] (along w's rows).
// A small output (few 64 x 64 tiles) with a long reduction would leave most SMs idle, so the host may split
// the reduction over I into gridDim.z chunks: each writes a raw partial (N,O) to ws, and
// dense_sum_splits_bias_act adds the partials in order and applies bias and activation. With one chunk,
// ws is y and the epilogue applies them directly.
// grid (ceil(O/64), ceil(N/64), splits), 256 threads
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    dense_forward(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
                  float* __restrict__ ws, i64 N, i64 I, i64 O, i64 has_bias, i64 act, float alpha,
                  i64 chunk) {
  const int split = blockIdx.z;
  const int k_begin = split * (int)chunk;
  const int k_end = k_begin + (int)chunk < (int)I ? k_begin + (int)chunk : (int)I;
  const bool whole = gridDim.z == 1;
  RowsK la{x, (int)I};
  RowsK lb{w, (int)I};
  RowMajorStore ep{ws + (i64)split * N * O,     b,    (int)O, whole ? (int)has_bias : 0,
                   whole ? (int)act : ACT_NONE, alpha};
  gemm_tile(la, lb, ep, (int)N, (int)O, k_begin, k_end);
}

// y[n][o] = act(sum over splits of ws[split][n][o] + b[o]), the splits added in order
extern "C" __global__ void dense_sum_splits_bias_act(const float* __restrict__ ws,
                                                     const float* __restrict__ b, float* __restrict__ y,
                                                     i64 total, i64 O, i64 splits, i64 has_bias, i64 act,
                                                     float alpha) {
  GRID_STRIDE_LOOP(i, total) {
    float s = 0.f;
    for (i64 p = 0; p < splits; ++p) s += ws[p * total + i];
    y[i] = activate(has_bias ? s + b[i % O] : s, (int)act, alpha);
  }
}

// dx (N,I): C[n][i] = sum_o dy[n][o] w[o][i]; A = dy along rows, B(o, i) = w[o][i] down columns.
// grid (ceil(I/64), ceil(N/64)), 256 threads
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    dense_backward_data(const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx,
                        i64 N, i64 I, i64 O) {
  RowsK la{dy, (int)O};
  ColsK lb{w, (int)I};
  RowMajorStore ep{dx, nullptr, (int)I, 0, ACT_NONE, 0.f};
  gemm_tile(la, lb, ep, (int)N, (int)I, 0, (int)O);
}

// dw (O,I): C[o][i] = sum_n dy[n][o] x[n][i]; A(o, n) = dy[n][o] and B(n, i) = x[n][i], both down columns.
// The batch is split into `splits` chunks (blockIdx.z); ws holds one (O,I) partial per split.
// grid (ceil(I/64), ceil(O/64), splits), 256 threads
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    dense_backward_weight(const float* __restrict__ dy, const float* __restrict__ x, float* __restrict__ ws,
                          i64 N, i64 I, i64 O, i64 chunk) {
  const int split = blockIdx.z;
  const int k_begin = split * (int)chunk;
  const int k_end = k_begin + (int)chunk < (int)N ? k_begin + (int)chunk : (int)N;
  ColsK la{dy, (int)O};
  ColsK lb{x, (int)I};
  RowMajorStore ep{ws + (i64)split * O * I, nullptr, (int)I, 0, ACT_NONE, 0.f};
  gemm_tile(la, lb, ep, (int)O, (int)I, k_begin, k_end);
}
