// pool.cu: max and average pooling, forward and backward. NC = N*C planes, each H x W in, P x Q out.
//
//   maxpool2d_forward   x (N,C,H,W) -> y (N,C,P,Q), argmax int64 (N,C,P,Q) (flat index into the H*W plane)
//   maxpool2d_backward  dy (N,C,P,Q), argmax -> dx (N,C,H,W) (dx zeroed by the host)
//   avgpool2d_forward   x (N,C,H,W) -> y (N,C,P,Q)
//   avgpool2d_backward  dy (N,C,P,Q) -> dx (N,C,H,W)
//
// Window of output (p, q): rows p*sh - ph + i*dh (i < kh), columns q*sw - pw + j*dw (j < kw); taps outside
// the plane are padding. Max pool: padding is -inf, the scan is row-major, the start index is the first
// in-plane tap, and `v > best || isnan(v)` takes the first maximum or the last NaN (PyTorch's rule).
// Avg pool (no dilation): the divisor is the window clipped to the padded edge [.., H + ph) when
// count_include_pad (the ceil_mode overhang is not counted), else the number of in-plane taps.
#include "common.cuh"

// one thread per output, grid-stride
extern "C" __global__ void maxpool2d_forward(const float* __restrict__ x, float* __restrict__ y,
                                             i64* __restrict__ argmax, i64 NC, i64 H, i64 W, i64 P, i64 Q,
                                             i64 kh, i64 kw, i64 sh, i64 sw, i64 ph, i64 pw, i64 dh, i64 dw) {
  GRID_STRIDE_LOOP(o, NC * P * Q) {
    const i64 plane = o / (P * Q);
    const int pq = (int)(o - plane * P * Q), p = pq / (int)Q, q = pq - p * (int)Q;
    const float* xp = x + plane * H * W;
    const int h0 = p * (int)sh - (int)ph, w0 = q * (int)sw - (int)pw;
    float best = neg_inf();
    i64 arg = -1;
    for (int i = 0; i < (int)kh; ++i) {
      const int h = h0 + i * (int)dh;
      if (h < 0 || h >= (int)H) continue;
      for (int j = 0; j < (int)kw; ++j) {
        const int w = w0 + j * (int)dw;
        if (w < 0 || w >= (int)W) continue;
        const int idx = h * (int)W + w;
        const float v = xp[idx];
        if (arg < 0) arg = idx;
        if (v > best || isnan(v)) {
          best = v;
          arg = idx;
        }
      }
    }
    y[o] = best;
    argmax[o] = arg;
  }
}

// dx[plane][argmax[o]] += dy[o] over the plane's outputs o in increasing order, exactly as a serial loop
// would add them (so the result is deterministic and equal to a sequential scatter), without atomics:
// one warp per plane walks its outputs 32 at a time; lanes holding the same argmax are grouped with
// __match_any_sync and the group's lowest lane adds their dy values in lane (= output) order. Chunks are
// separated by __syncwarp, which also orders the dx writes of one chunk before the reads of the next.
// Only the warp owning a plane touches it. Indices outside [0, HW) (a window with no in-plane tap, which the
// front door's shape rules exclude) are skipped. grid-stride over planes; blockDim a multiple of 32.
extern "C" __global__ void maxpool2d_backward(const float* __restrict__ dy, const i64* __restrict__ argmax,
                                              float* __restrict__ dx, i64 NC, i64 HW, i64 PQ) {
  __shared__ float vals[32 * 32];  // one dy slot per lane, for up to 32 warps per block
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps_per_block = blockDim.x >> 5;
  float* slot = vals + warp * 32;
  for (i64 plane = (i64)blockIdx.x * warps_per_block + warp; plane < NC;
       plane += (i64)gridDim.x * warps_per_block) {
    const float* dyp = dy + plane * PQ;
    const i64* ap = argmax + plane * PQ;
    float* dxp = dx + plane * HW;
    for (i64 base = 0; base < PQ; base += 32) {
      const i64 o = base + lane;
      const bool live = o < PQ;
      long long key = live ? ap[o] : -1 - lane;  // dead lanes get unique keys that match nobody
      if (live && (key < 0 || key >= HW)) key = -1 - lane;
      const bool active = key >= 0;
      slot[lane] = active ? dyp[o] : 0.f;
      const unsigned group = __match_any_sync(0xffffffffu, (unsigned long long)key);
      __syncwarp();
      if (active && (__ffs(group) - 1) == lane) {
        float acc = dxp[key];
        for (unsigned g = group; g; g &= g - 1) acc += slot[__ffs(g) - 1];
        dxp[key] = acc;
      }
      __syncwarp();
    }
  }
}

// Divisor of output (p, q) and its clipped window [hs, he) x [ws, we).
struct AvgWindow {
  int hs, he, ws, we;
  float divisor;
};

__device__ __forceinline__ AvgWindow avg_window(int p, int q, int H, int W, int kh, int kw, int sh, int sw,
                                                int ph, int pw, int count_include_pad) {
  AvgWindow a;
  a.hs = p * sh - ph;
  a.ws = q * sw - pw;
  a.he = min(a.hs + kh, H + ph);
  a.we = min(a.ws + kw, W + pw);
  const int padded = (a.he - a.hs) * (a.we - a.ws);
  a.hs = max(a.hs, 0);
  a.ws = max(a.ws, 0);
  a.he = min(a.he, H);
  a.we = min(a.we, W);
  a.divisor = (float)(count_include_pad ? padded : (a.he - a.hs) * (a.we - a.ws));
  return a;
}

// one thread per output, grid-stride
extern "C" __global__ void avgpool2d_forward(const float* __restrict__ x, float* __restrict__ y, i64 NC,
                                             i64 H, i64 W, i64 P, i64 Q, i64 kh, i64 kw, i64 sh, i64 sw,
                                             i64 ph, i64 pw, i64 count_include_pad) {
  GRID_STRIDE_LOOP(o, NC * P * Q) {
    const i64 plane = o / (P * Q);
    const int pq = (int)(o - plane * P * Q), p = pq / (int)Q, q = pq - p * (int)Q;
    const AvgWindow a = avg_window(p, q, (int)H, (int)W, (int)kh, (int)kw, (int)sh, (int)sw, (int)ph, (int)pw,
                                   (int)count_include_pad);
    const float* xp = x + plane * H * W;
    float s = 0.f;
    for (int h = a.hs; h < a.he; ++h)
      for (int w = a.ws; w < a.we; ++w) s += xp[h * (int)W + w];
    y[o] = s / a.divisor;
  }
}

// Gather form, one thread per input element: dx[h, w] = sum of dy[p, q] / divisor(p, q) over the windows
// that contain (h, w): p*sh - ph <= h < p*sh - ph + kh, i.e. p in [ceil((h+ph-kh+1)/sh), floor((h+ph)/sh)]
// clipped to [0, P) (same for q). No write conflicts, no atomics.
extern "C" __global__ void avgpool2d_backward(const float* __restrict__ dy, float* __restrict__ dx, i64 NC,
                                              i64 H, i64 W, i64 P, i64 Q, i64 kh, i64 kw, i64 sh, i64 sw,
                                              i64 ph, i64 pw, i64 count_include_pad) {
  GRID_STRIDE_LOOP(e, NC * H * W) {
    const i64 plane = e / (H * W);
    const int hw = (int)(e - plane * H * W), h = hw / (int)W, w = hw - h * (int)W;
    const int hp = h + (int)ph, wp = w + (int)pw;  // >= 0
    const int p_lo = hp - (int)kh < 0 ? 0 : (hp - (int)kh) / (int)sh + 1;
    const int q_lo = wp - (int)kw < 0 ? 0 : (wp - (int)kw) / (int)sw + 1;
    const int p_hi = min(hp / (int)sh, (int)P - 1), q_hi = min(wp / (int)sw, (int)Q - 1);
    const float* dyp = dy + plane * P * Q;
    float s = 0.f;
    for (int p = p_lo; p <= p_hi; ++p)
      for (int q = q_lo; q <= q_hi; ++q) {
        const AvgWindow a = avg_window(p, q, (int)H, (int)W, (int)kh, (int)kw, (int)sh, (int)sw, (int)ph,
                                       (int)pw, (int)count_include_pad);
        s += dyp[p * (int)Q + q] / a.divisor;
      }
    dx[e] = s;
  }
}
