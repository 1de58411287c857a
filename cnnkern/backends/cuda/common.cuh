// common.cuh: helpers shared by every cnnkern CUDA kernel file.
//
// The kernels are compiled at run time by NVRTC (CuPy RawModule); loader.py pastes this header into each
// .cu source in place of its #include, so no include path or system header is needed. nvcc compiles the
// same files in the tests. Conventions:
//   * every integer kernel argument is `long long` (the host passes numpy.int64), every float argument is
//     `float` (numpy.float32); sizes the host has checked to fit in 31 bits are narrowed to int for the
//     index arithmetic inside loops, flat memory offsets stay 64-bit;
//   * elementwise kernels use grid-stride loops, so any grid size is correct;
//   * reductions are done in a fixed order (per-thread serial sums, then a fixed shuffle tree), never with
//     float atomics, so results are bitwise reproducible run to run.
#pragma once

typedef long long i64;

// for (i64 i = ...; i < n; ...) over all threads of the grid
#define GRID_STRIDE_LOOP(i, n) \
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (i64)(n); i += (i64)blockDim.x * gridDim.x)

// Activation codes shared with the Python side (cnnkern/backends/cuda/__init__.py: _ACT).
#define ACT_NONE 0
#define ACT_RELU 1
#define ACT_LEAKY_RELU 2
#define ACT_SIGMOID 3
#define ACT_TANH 4

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

// y = f(x). relu keeps NaN (x > 0 is false for NaN, so it is tested explicitly); sigmoid uses the form
// that cannot overflow on either side: 1/(1+e^-|x|) for x >= 0, e^-|x|/(1+e^-|x|) below.
__device__ __forceinline__ float activate(float x, int kind, float alpha) {
  switch (kind) {
    case ACT_RELU:
      return x > 0.f ? x : (isnan(x) ? x : 0.f);
    case ACT_LEAKY_RELU:
      return x > 0.f ? x : x * alpha;
    case ACT_SIGMOID: {
      float e = expf(-fabsf(x));
      return x >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
    }
    case ACT_TANH:
      return tanhf(x);
    default:
      return x;
  }
}

// dx from dy and the activation's output y (PyTorch's convention: relu and leaky relu test y > 0).
__device__ __forceinline__ float activate_grad(float dy, float y, int kind, float alpha) {
  switch (kind) {
    case ACT_RELU:
      return y <= 0.f ? 0.f : dy;  // a NaN y passes dy (PyTorch's threshold_backward)
    case ACT_LEAKY_RELU:
      return y > 0.f ? dy : dy * alpha;
    case ACT_SIGMOID:
      return dy * y * (1.f - y);
    case ACT_TANH:
      return dy * (1.f - y * y);
    default:
      return dy;
  }
}

// Sum over the 32 lanes of a warp by a butterfly: every lane ends with the same, order-fixed total.
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  // fmaxf drops NaN; the loss kernel handles NaN rows through the sum (exp(NaN) poisons it)
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024); every thread gets the total.
// `scratch` is __shared__ float[33]. Safe to call repeatedly: the leading barrier keeps a new call from
// overwriting scratch[32] before every thread has read the previous total.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  __syncthreads();
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < nwarps ? scratch[lane] : 0.f;
    t = warp_sum(t);
    if (lane == 0) scratch[32] = t;
  }
  __syncthreads();
  return scratch[32];
}

// The slice [begin, end) of a per-channel reduction of `count` values split into chunks of `chunk`;
// blockIdx.x is the channel (no 65535 limit), blockIdx.y the chunk (see reduce.cuh, batchnorm.cu).
struct ChunkRange {
  i64 begin, end;
};

__device__ __forceinline__ ChunkRange chunk_range(i64 count, i64 chunk) {
  ChunkRange r;
  r.begin = (i64)blockIdx.y * chunk;
  r.end = r.begin + chunk < count ? r.begin + chunk : count;
  return r;
}
