// quant.cu: the int8 inference kernels (cnnkern.compress; the specification is
// cnnkern/backends/reference/quant.py). Images are channels-last; one thread per output value, grid-stride.
//
//   conv2d_q8   x (N,H,W,C) u8, w (K,R,S,C/g) s8 (taps' channels contiguous) -> y (N,P,Q,K) u8
//   dense_q8    x (N,IN) u8, w (OUT,IN) s8 -> y (N,OUT) u8, or the int32 accumulators (requantize = 0)
//   maxpool2d_q8  x (N,H,W,C) u8 -> y (N,P,Q,C) u8
//
// The products go through __dp4a four channels at a time (7-bit codes are valid signed bytes, so the signed
// form is exact) where the channel run is a multiple of 4 bytes at a 4-byte aligned offset, else byte by
// byte. The zero point: sum (x - z) w = sum x w - z sum w over the in-image taps (a padded tap adds 0),
// both sums inside int32 by the format's bounds.
#include "common.cuh"

__device__ __forceinline__ unsigned char requant_q8(long long acc, long long m, long long s, long long zero,
                                                    long long lo) {
  long long v = zero + ((acc * m + (1LL << (s - 1))) >> s);
  v = v < lo ? lo : v;
  return (unsigned char)(v > 127 ? 127 : v);
}

// sum over n bytes of x * w and of w (int32), 4 at a time with dp4a when both runs are 4-byte aligned
__device__ __forceinline__ void dot_q8(const unsigned char* x, const signed char* w, int n, int* xw,
                                       int* ws) {
  int i = 0;
  if ((((unsigned long long)x | (unsigned long long)w) & 3) == 0) {
    const int* x4 = (const int*)x;
    const int* w4 = (const int*)w;
    for (; i + 4 <= n; i += 4) {
      const int wv = w4[i / 4];
      *xw = __dp4a(x4[i / 4], wv, *xw);
      *ws = __dp4a(0x01010101, wv, *ws);
    }
  }
  for (; i < n; ++i) {
    *xw += (int)x[i] * (int)w[i];
    *ws += (int)w[i];
  }
}

extern "C" __global__ void conv2d_q8(const unsigned char* __restrict__ x, const signed char* __restrict__ w,
                                     const int* __restrict__ bias, const int* __restrict__ mult,
                                     const int* __restrict__ shift, unsigned char* __restrict__ y, i64 N,
                                     i64 H, i64 W, i64 C, i64 K, i64 R, i64 S, i64 P, i64 Q, i64 sh, i64 sw,
                                     i64 pt, i64 pl, i64 dh, i64 dw, i64 groups, i64 x_zero, i64 y_zero,
                                     i64 lo) {
  const i64 CG = C / groups, KG = K / groups;
  GRID_STRIDE_LOOP(o, N * P * Q * K) {
    const i64 k = o % K, pix = o / K, q = pix % Q, p = (pix / Q) % P, n = pix / (P * Q);
    const i64 c0 = (k / KG) * CG;
    int xw = 0, ws = 0;
    for (i64 i = 0; i < R; ++i) {
      const i64 hh = p * sh - pt + i * dh;
      if (hh < 0 || hh >= H) continue;
      for (i64 j = 0; j < S; ++j) {
        const i64 ww = q * sw - pl + j * dw;
        if (ww < 0 || ww >= W) continue;
        dot_q8(x + ((n * H + hh) * W + ww) * C + c0, w + ((k * R + i) * S + j) * CG, (int)CG, &xw, &ws);
      }
    }
    const long long acc = (long long)bias[k] + (long long)xw - x_zero * (long long)ws;
    y[o] = requant_q8(acc, mult[k], shift[k], y_zero, lo);
  }
}

extern "C" __global__ void dense_q8(const unsigned char* __restrict__ x, const signed char* __restrict__ w,
                                    const int* __restrict__ bias, const int* __restrict__ mult,
                                    const int* __restrict__ shift, unsigned char* __restrict__ y,
                                    int* __restrict__ acc_out, i64 N, i64 IN, i64 OUT, i64 x_zero, i64 y_zero,
                                    i64 lo, i64 requantize) {
  GRID_STRIDE_LOOP(o, N * OUT) {
    const i64 k = o % OUT, n = o / OUT;
    int xw = 0, ws = 0;
    dot_q8(x + n * IN, w + k * IN, (int)IN, &xw, &ws);
    const long long acc = (long long)bias[k] + (long long)xw - x_zero * (long long)ws;
    if (requantize)
      y[o] = requant_q8(acc, mult[k], shift[k], y_zero, lo);
    else
      acc_out[o] = (int)acc;
  }
}

extern "C" __global__ void maxpool2d_q8(const unsigned char* __restrict__ x, unsigned char* __restrict__ y,
                                        i64 N, i64 H, i64 W, i64 C, i64 P, i64 Q, i64 kh, i64 kw, i64 sh,
                                        i64 sw, i64 ph, i64 pw) {
  GRID_STRIDE_LOOP(o, N * P * Q * C) {
    const i64 c = o % C, pix = o / C, q = pix % Q, p = (pix / Q) % P, n = pix / (P * Q);
    unsigned char best = 0;  // below every code, as the specification's padding
    for (i64 i = 0; i < kh; ++i) {
      const i64 hh = p * sh - ph + i;
      if (hh < 0 || hh >= H) continue;
      for (i64 j = 0; j < kw; ++j) {
        const i64 ww = q * sw - pw + j;
        if (ww < 0 || ww >= W) continue;
        const unsigned char v = x[((n * H + hh) * W + ww) * C + c];
        best = v > best ? v : best;
      }
    }
    y[o] = best;
  }
}
