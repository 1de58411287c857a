// augment.cu: data augmentation, forward only (the formulas of reference/augment.py); one thread per output
// element, except the colour kernel: one block per (n, c) plane, which first sums its plane.
//
//   augment_shift_forward   flip, then y[i, j] = flipped[i - dy, j - dx] (0 outside), then the erase box 0
//   augment_affine_forward  bilinear sample at column a0 j + a1 i + a2, row a3 j + a4 i + a5; taps outside
//                           the image read fill_value
//   augment_color_forward   clip((x - mean) * contrast + mean + brightness, low, high)
#include "common.cuh"

extern "C" __global__ void augment_shift_forward(const float* __restrict__ x, const i64* __restrict__ flip,
                                                 const i64* __restrict__ offset,
                                                 const i64* __restrict__ erase, float* __restrict__ y, i64 N,
                                                 i64 C, i64 H, i64 W, i64 OH, i64 OW) {
  GRID_STRIDE_LOOP(e, N * C * OH * OW) {
    const i64 j = e % OW, i = (e / OW) % OH, p = e / (OW * OH), n = p / C;
    const i64* box = erase + 4 * n;
    float v = 0.0f;
    const bool erased = i >= box[0] && i < box[0] + box[2] && j >= box[1] && j < box[1] + box[3];
    i64 si = i - offset[2 * n], sj = j - offset[2 * n + 1];
    if (!erased && si >= 0 && si < H && sj >= 0 && sj < W) {
      if (flip[2 * n + 1]) si = H - 1 - si;
      if (flip[2 * n]) sj = W - 1 - sj;
      v = x[(p * H + si) * W + sj];
    }
    y[e] = v;
  }
}

__device__ __forceinline__ float augment_tap(const float* plane, float ty, float tx, i64 H, i64 W,
                                             float fill) {
  if (ty >= 0.0f && ty <= (float)(H - 1) && tx >= 0.0f && tx <= (float)(W - 1))
    return plane[(i64)ty * W + (i64)tx];
  return fill;
}

extern "C" __global__ void augment_affine_forward(const float* __restrict__ x,
                                                  const float* __restrict__ theta, float* __restrict__ y,
                                                  i64 N, i64 C, i64 H, i64 W, float fill) {
  GRID_STRIDE_LOOP(e, N * C * H * W) {
    const i64 j = e % W, i = (e / W) % H, p = e / (W * H);
    const float* t = theta + 6 * (p / C);
    const float* plane = x + p * H * W;
    const float fi = (float)i, fj = (float)j;
    // the GPU may contract these into FMAs: the conformance tolerance covers it
    const float sx = t[0] * fj + t[1] * fi + t[2];
    const float sy = t[3] * fj + t[4] * fi + t[5];
    const float x0 = floorf(sx), y0 = floorf(sy);
    const float fx = sx - x0, fy = sy - y0;
    float acc = (1.0f - fy) * (1.0f - fx) * augment_tap(plane, y0, x0, H, W, fill);
    acc += (1.0f - fy) * fx * augment_tap(plane, y0, x0 + 1.0f, H, W, fill);
    acc += fy * (1.0f - fx) * augment_tap(plane, y0 + 1.0f, x0, H, W, fill);
    acc += fy * fx * augment_tap(plane, y0 + 1.0f, x0 + 1.0f, H, W, fill);
    y[e] = acc;
  }
}

// One block of AUGMENT_THREADS per plane: a strided float64 partial sum per thread, a tree in shared memory.
#define AUGMENT_THREADS 256
extern "C" __global__ void __launch_bounds__(AUGMENT_THREADS)
    augment_color_forward(const float* __restrict__ x, const float* __restrict__ contrast,
                          const float* __restrict__ brightness, float* __restrict__ y, i64 C, i64 HW,
                          float lo, float hi) {
  __shared__ double partial[AUGMENT_THREADS];
  const i64 p = blockIdx.x, n = p / C;
  const float* plane = x + p * HW;
  double s = 0.0;
  for (i64 k = threadIdx.x; k < HW; k += AUGMENT_THREADS) s += (double)plane[k];
  partial[threadIdx.x] = s;
  __syncthreads();
  for (int half = AUGMENT_THREADS / 2; half > 0; half /= 2) {
    if ((int)threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  const float mean = (float)(partial[0] / (double)HW);
  const float c = contrast[n], b = brightness[n];
  for (i64 k = threadIdx.x; k < HW; k += AUGMENT_THREADS) {
    float v = (plane[k] - mean) * c + mean + b;
    v = v < lo ? lo : v;
    y[p * HW + k] = v > hi ? hi : v;
  }
}
