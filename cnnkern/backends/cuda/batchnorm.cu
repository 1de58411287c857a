// batchnorm.cu: batch normalisation over (N, H, W) per channel, forward and backward.
//
//   forward  x (N,C,H,W), gamma, beta, running_mean, running_var (C,) -> y (N,C,H,W), mean (C,), invstd (C,)
//   backward dy, x (N,C,H,W), gamma, mean, invstd (C,) -> dx (N,C,H,W), dgamma (C,), dbeta (C,)
//
// Training statistics are two-pass, n = N*H*W per channel: mean = sum(x)/n, then var = sum((x-mean)^2)/n
// (biased, never E[x^2] - E[x]^2), invstd = 1/sqrt(var + eps); running_mean/var <- (1-m) old + m new with
// the unbiased variance var*n/(n-1). Backward (training):
//   dx = gamma*invstd/n * (n*dy - sum(dy) - xhat*sum(dy*xhat)),  xhat = (x - mean)*invstd,
//   dbeta = sum(dy), dgamma = sum(dy*xhat); in eval mode the statistics are constants: dx = gamma*invstd*dy.
// Each sum is a split reduction: grid (C, splits) blocks sum one chunk of a channel each (fixed order),
// then one thread per channel adds the chunks in order, so results are reproducible bit for bit.
#include "common.cuh"

// element j of channel c's N*HW values, j = n*HW + i  ->  offset (n*C + c)*HW + i
__device__ __forceinline__ i64 channel_offset(i64 j, i64 c, i64 C, i64 HW) {
  const i64 n = j / HW;
  return (n * C + c) * HW + (j - n * HW);
}

// pass 1: partial[c][chunk] = sum x;  pass 2 (mean != nullptr): sum (x - mean[c])^2
extern "C" __global__ void batchnorm2d_partial_moment(const float* __restrict__ x,
                                                      const float* __restrict__ mean,
                                                      float* __restrict__ partial, i64 N, i64 C, i64 HW,
                                                      i64 chunk, i64 centered) {
  __shared__ float scratch[33];
  const i64 c = blockIdx.x;
  const ChunkRange r = chunk_range(N * HW, chunk);
  const float mu = centered ? mean[c] : 0.f;
  float acc = 0.f;
  for (i64 j = r.begin + threadIdx.x; j < r.end; j += blockDim.x) {
    const float v = x[channel_offset(j, c, C, HW)];
    if (centered) {
      const float d = v - mu;
      acc += d * d;
    } else {
      acc += v;
    }
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) partial[c * gridDim.y + blockIdx.y] = acc;
}

// mean[c] = sum of the chunks / n; one thread per channel
extern "C" __global__ void batchnorm2d_finish_mean(const float* __restrict__ partial,
                                                   float* __restrict__ mean, i64 C, i64 splits, i64 count) {
  GRID_STRIDE_LOOP(c, C) {
    float s = 0.f;
    for (i64 p = 0; p < splits; ++p) s += partial[c * splits + p];
    mean[c] = s / (float)count;
  }
}

// var = sum of the chunks / n; invstd; running statistics updated in place
extern "C" __global__ void batchnorm2d_finish_var(const float* __restrict__ partial,
                                                  const float* __restrict__ mean, float* __restrict__ invstd,
                                                  float* __restrict__ running_mean,
                                                  float* __restrict__ running_var, i64 C, i64 splits,
                                                  i64 count, float momentum, float eps) {
  GRID_STRIDE_LOOP(c, C) {
    float s = 0.f;
    for (i64 p = 0; p < splits; ++p) s += partial[c * splits + p];
    const float var = s / (float)count;
    invstd[c] = 1.f / sqrtf(var + eps);
    const float unbiased = var * ((float)count / (float)(count - 1));
    running_mean[c] = (1.f - momentum) * running_mean[c] + momentum * mean[c];
    running_var[c] = (1.f - momentum) * running_var[c] + momentum * unbiased;
  }
}

// eval mode: mean = running_mean, invstd = 1/sqrt(running_var + eps)
extern "C" __global__ void batchnorm2d_eval_stats(const float* __restrict__ running_mean,
                                                  const float* __restrict__ running_var,
                                                  float* __restrict__ mean, float* __restrict__ invstd, i64 C,
                                                  float eps) {
  GRID_STRIDE_LOOP(c, C) {
    mean[c] = running_mean[c];
    invstd[c] = 1.f / sqrtf(running_var[c] + eps);
  }
}

// y = (x - mean)*invstd*gamma + beta, optionally followed by an activation (fused batchnorm + act)
extern "C" __global__ void batchnorm2d_forward(const float* __restrict__ x, const float* __restrict__ mean,
                                               const float* __restrict__ invstd,
                                               const float* __restrict__ gamma,
                                               const float* __restrict__ beta, float* __restrict__ y,
                                               i64 total, i64 C, i64 HW, i64 act, float alpha) {
  GRID_STRIDE_LOOP(e, total) {
    const i64 c = (e / HW) % C;
    const float xhat = (x[e] - mean[c]) * invstd[c];
    y[e] = activate(xhat * gamma[c] + beta[c], (int)act, alpha);
  }
}

// partial_dy[c][chunk] = sum dy, partial_dyx[c][chunk] = sum dy*xhat
extern "C" __global__ void batchnorm2d_partial_grad(const float* __restrict__ dy, const float* __restrict__ x,
                                                    const float* __restrict__ mean,
                                                    const float* __restrict__ invstd,
                                                    float* __restrict__ partial_dy,
                                                    float* __restrict__ partial_dyx, i64 N, i64 C, i64 HW,
                                                    i64 chunk) {
  __shared__ float scratch[33];
  const i64 c = blockIdx.x;
  const ChunkRange r = chunk_range(N * HW, chunk);
  const float mu = mean[c], is = invstd[c];
  float sdy = 0.f, sdyx = 0.f;
  for (i64 j = r.begin + threadIdx.x; j < r.end; j += blockDim.x) {
    const i64 off = channel_offset(j, c, C, HW);
    const float g = dy[off];
    sdy += g;
    sdyx += g * ((x[off] - mu) * is);
  }
  sdy = block_sum(sdy, scratch);
  sdyx = block_sum(sdyx, scratch);
  if (threadIdx.x == 0) {
    partial_dy[c * gridDim.y + blockIdx.y] = sdy;
    partial_dyx[c * gridDim.y + blockIdx.y] = sdyx;
  }
}

// dbeta[c] = sum of partial_dy chunks, dgamma[c] = sum of partial_dyx chunks, in chunk order
extern "C" __global__ void batchnorm2d_finish_grad(const float* __restrict__ partial_dy,
                                                   const float* __restrict__ partial_dyx,
                                                   float* __restrict__ dbeta, float* __restrict__ dgamma,
                                                   i64 C, i64 splits) {
  GRID_STRIDE_LOOP(c, C) {
    float a = 0.f, b = 0.f;
    for (i64 p = 0; p < splits; ++p) {
      a += partial_dy[c * splits + p];
      b += partial_dyx[c * splits + p];
    }
    dbeta[c] = a;
    dgamma[c] = b;
  }
}

// dx from the channel sums (training) or as gamma*invstd*dy (eval)
extern "C" __global__ void batchnorm2d_backward(const float* __restrict__ dy, const float* __restrict__ x,
                                                const float* __restrict__ gamma,
                                                const float* __restrict__ mean,
                                                const float* __restrict__ invstd,
                                                const float* __restrict__ dbeta,
                                                const float* __restrict__ dgamma, float* __restrict__ dx,
                                                i64 total, i64 C, i64 HW, i64 count, i64 training) {
  GRID_STRIDE_LOOP(e, total) {
    const i64 c = (e / HW) % C;
    const float is = invstd[c];
    if (training) {
      const float n = (float)count;
      const float xhat = (x[e] - mean[c]) * is;
      dx[e] = gamma[c] * is / n * (n * dy[e] - dbeta[c] - xhat * dgamma[c]);
    } else {
      dx[e] = gamma[c] * is * dy[e];
    }
  }
}
