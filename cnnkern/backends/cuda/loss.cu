// loss.cu: softmax cross-entropy with integer labels, mean over the batch.
//
//   softmax_cross_entropy_forward   logits (N,C), labels int64 (N,) -> loss () , probs (N,C)
//   softmax_cross_entropy_backward  probs (N,C), labels -> dlogits (N,C) = (probs - onehot(labels)) / N
//
// Per row, stably: m = max_j x_j, s = sum_j exp(x_j - m), log_softmax_j = x_j - m - log s,
// row_loss = -log_softmax_label, probs_j = exp(x_j - m) / s. One warp per row (lanes stride over the
// classes, shuffle-tree reductions); the mean over rows is a single-block fixed-order sum, so the loss is
// reproducible bit for bit. Labels are in range (checked by the front door).
//   softmax_cross_entropy_soft_forward   logits, targets (N,C), weights (N,) (if weighted) -> row_loss, probs
//       row_loss = w * sum_j t_j * (log s - (x_j - m)); mean_loss then gives sum / N
//   softmax_cross_entropy_soft_backward  probs, targets, weights -> dlogits = w * (sum_j t_j * probs - t) / N
#include "common.cuh"

// a row's max m and log sum_j exp(x_j - m), reduced over the warp: every lane gets both
__device__ __forceinline__ float warp_log_sum_exp(const float* __restrict__ x, i64 C, int lane, float& m) {
  m = neg_inf();
  for (i64 j = lane; j < C; j += 32) m = fmaxf(m, x[j]);
  m = warp_max(m);
  float s = 0.f;
  for (i64 j = lane; j < C; j += 32) s += expf(x[j] - m);
  return logf(warp_sum(s));
}

// warp per row, grid-stride over rows; blockDim a multiple of 32
extern "C" __global__ void softmax_cross_entropy_forward(const float* __restrict__ logits,
                                                         const i64* __restrict__ labels,
                                                         float* __restrict__ probs,
                                                         float* __restrict__ row_loss, i64 N, i64 C) {
  const int lane = threadIdx.x & 31;
  const i64 warps = ((i64)gridDim.x * blockDim.x) >> 5;
  for (i64 row = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5; row < N; row += warps) {
    const float* x = logits + row * C;
    float m;
    const float log_s = warp_log_sum_exp(x, C, lane, m);
    float* pr = probs + row * C;
    for (i64 j = lane; j < C; j += 32) pr[j] = expf(x[j] - m - log_s);
    if (lane == 0) row_loss[row] = -(x[labels[row]] - m - log_s);
  }
}

// loss[0] = sum(row_loss) / N; launch with one block
extern "C" __global__ void mean_loss(const float* __restrict__ row_loss, float* __restrict__ loss, i64 N) {
  __shared__ float scratch[33];
  float s = 0.f;
  for (i64 i = threadIdx.x; i < N; i += blockDim.x) s += row_loss[i];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) loss[0] = s / (float)N;
}

extern "C" __global__ void softmax_cross_entropy_backward(const float* __restrict__ probs,
                                                          const i64* __restrict__ labels,
                                                          float* __restrict__ dlogits, i64 N, i64 C) {
  GRID_STRIDE_LOOP(e, N * C) {
    const i64 row = e / C, j = e - row * C;
    const float onehot = labels[row] == j ? 1.f : 0.f;
    dlogits[e] = (probs[e] - onehot) / (float)N;
  }
}

extern "C" __global__ void softmax_cross_entropy_soft_forward(const float* __restrict__ logits,
                                                              const float* __restrict__ targets,
                                                              const float* __restrict__ weights, i64 weighted,
                                                              float* __restrict__ probs,
                                                              float* __restrict__ row_loss, i64 N, i64 C) {
  const int lane = threadIdx.x & 31;
  const i64 warps = ((i64)gridDim.x * blockDim.x) >> 5;
  for (i64 row = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5; row < N; row += warps) {
    const float* x = logits + row * C;
    const float* t = targets + row * C;
    float m;
    const float log_s = warp_log_sum_exp(x, C, lane, m);
    float* pr = probs + row * C;
    float acc = 0.f;
    for (i64 j = lane; j < C; j += 32) {
      pr[j] = expf(x[j] - m - log_s);
      acc += t[j] * (log_s - (x[j] - m));
    }
    acc = warp_sum(acc);
    if (lane == 0) row_loss[row] = weighted ? weights[row] * acc : acc;
  }
}

// thread per row: the row's target sum, then its C gradients
extern "C" __global__ void softmax_cross_entropy_soft_backward(const float* __restrict__ probs,
                                                               const float* __restrict__ targets,
                                                               const float* __restrict__ weights,
                                                               i64 weighted, float* __restrict__ dlogits,
                                                               i64 N, i64 C) {
  GRID_STRIDE_LOOP(row, N) {
    const float* t = targets + row * C;
    float total = 0.f;
    for (i64 j = 0; j < C; ++j) total += t[j];
    const float scale = (weighted ? weights[row] : 1.f) / (float)N;
    for (i64 j = 0; j < C; ++j) dlogits[row * C + j] = (probs[row * C + j] * total - t[j]) * scale;
  }
}
