// conv.cu: 2-D convolution (cross-correlation, zero padding, groups), forward and backward, as implicit
// GEMMs over gemm.cuh.
//
//   forward  x (N,C,H,W), w (K,C/G,R,S), b (K,) -> y (N,K,P,Q)
//            y[n,k,p,q] = b[k] + sum_{c,r,s} w[k,c,r,s] x[n, g*Cg + c, p*sh - pt + r*dh, q*sw - pl + s*dw]
//   backward dy (N,K,P,Q) -> dx (N,C,H,W), dw (K,C/G,R,S), db (K,)
//
// Per group g (blockIdx.z), with Cg = C/G input and Kg = K/G output channels per group:
//   forward     C[k][(n,p,q)] = sum over (c,r,s) of W[k][(c,r,s)] . X[(c,r,s)][(n,p,q)]  (M=Kg, Kd=Cg*R*S)
//   grad input  C[c][(n,h,w)] = sum over (k,r,s) of W[k][c,r,s] . DY[(k,r,s)][(n,h,w)]  (M=Cg, Kd=Kg*R*S)
//               where DY gathers dy[n,k,p,q] for the (p,q) with p*sh - pt + r*dh = h (zero if none)
//   grad weight C[k][(c,r,s)] = sum over (n,p,q) of dy[n,k,p,q] . x[n,c,p*sh-pt+r*dh, q*sw-pl+s*dw]
//               (M=Kg, Kd=N*P*Q, split over the reduction, see gemm.cuh)
//   grad bias   db[k] = sum over (n,p,q) of dy[n,k,p,q]  (channel_partial_sum + sum_partials)
// The host checks that every GEMM dimension fits in 31 bits; flat offsets are 64-bit.
#include "common.cuh"
#include "gemm.cuh"
#include "reduce.cuh"

struct ConvShape {
  int N, C, H, W, K, P, Q, R, S, sh, sw, pt, pl, dh, dw, G;
  int Cg, Kg, RS, HW, PQ;
};

__device__ __forceinline__ ConvShape conv_shape(i64 N, i64 C, i64 H, i64 W, i64 K, i64 P, i64 Q, i64 R, i64 S,
                                                i64 sh, i64 sw, i64 pt, i64 pl, i64 dh, i64 dw, i64 G) {
  ConvShape s{(int)N,  (int)C,  (int)H,  (int)W,  (int)K, (int)P, (int)Q, (int)R, (int)S, (int)sh, (int)sw,
              (int)pt, (int)pl, (int)dh, (int)dw, (int)G, 0,      0,      0,      0,      0};
  s.Cg = s.C / s.G;
  s.Kg = s.K / s.G;
  s.RS = s.R * s.S;
  s.HW = s.H * s.W;
  s.PQ = s.P * s.Q;
  return s;
}

#define CONV_SHAPE_ARGS                                                                                  \
  i64 N, i64 C, i64 H, i64 W, i64 K, i64 P, i64 Q, i64 R, i64 S, i64 sh, i64 sw, i64 pt, i64 pl, i64 dh, \
      i64 dw, i64 G
#define CONV_SHAPE_CALL conv_shape(N, C, H, W, K, P, Q, R, S, sh, sw, pt, pl, dh, dw, G)

// ---- forward ---------------------------------------------------------------------------------------------

// A(m=k, kk=(c,r,s)) = w[g*Kg + k][c][r][s]: a contiguous weight row
struct FwdW {
  static const bool kfast = true;
  const float* w;  // first row of group g
  int CRS;
  struct Pos {
    const float* row;
  };
  __device__ Pos at(int m) const { return Pos{w + (i64)m * CRS}; }
  __device__ float load(const Pos& p, int k) const { return p.row[k]; }
};

// B(kk=(c,r,s), n=(img,p,q)) = x[img, g*Cg + c, p*sh - pt + r*dh, q*sw - pl + s*dw], 0 in the padding
struct FwdX {
  static const bool kfast = false;
  const float* x;
  ConvShape s;
  int g;
  struct Pos {
    const float* plane;
    int h0, w0;
  };
  __device__ Pos at(int n) const {
    const int img = n / s.PQ, pq = n - img * s.PQ, p = pq / s.Q, q = pq - p * s.Q;
    return Pos{x + ((i64)img * s.C + (i64)g * s.Cg) * s.HW, p * s.sh - s.pt, q * s.sw - s.pl};
  }
  __device__ float load(const Pos& p, int k) const {
    const int c = k / s.RS, rs = k - c * s.RS, r = rs / s.S, sx = rs - r * s.S;
    const int h = p.h0 + r * s.dh, w = p.w0 + sx * s.dw;
    return ((unsigned)h < (unsigned)s.H && (unsigned)w < (unsigned)s.W) ? p.plane[(i64)c * s.HW + h * s.W + w]
                                                                        : 0.f;
  }
};

// y[img, g*Kg + m, p, q] = act(acc + b[g*Kg + m])
struct FwdStore {
  float* y;
  const float* b;
  ConvShape s;
  int g, has_bias, act;
  float alpha;
  struct Pos {
    float* out;
  };
  __device__ Pos at(int n) const {
    const int img = n / s.PQ, pq = n - img * s.PQ;
    return Pos{y + (i64)img * s.K * s.PQ + pq};
  }
  __device__ void store(int m, const Pos& p, float acc) const {
    const int k = g * s.Kg + m;
    const float v = has_bias ? acc + b[k] : acc;
    p.out[(i64)k * s.PQ] = activate(v, act, alpha);
  }
};

// grid (ceil(N*P*Q/64), ceil(Kg/64), G), 256 threads; act is an ACT_* code (ACT_NONE for plain conv)
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    conv2d_forward(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
                   float* __restrict__ y, CONV_SHAPE_ARGS, i64 has_bias, i64 act, float alpha) {
  const ConvShape s = CONV_SHAPE_CALL;
  const int g = blockIdx.z, CRS = s.Cg * s.RS;
  FwdW la{w + (i64)g * s.Kg * CRS, CRS};
  FwdX lb{x, s, g};
  FwdStore ep{y, b, s, g, (int)has_bias, (int)act, alpha};
  gemm_tile(la, lb, ep, s.Kg, s.N * s.PQ, 0, CRS);
}

// ---- backward: input gradient ----------------------------------------------------------------------------

// A(m=c, kk=(k,r,s)) = w[g*Kg + k][c][r][s]
struct BwdDataW {
  static const bool kfast = true;
  const float* w;  // w + g*Kg*Cg*RS
  int CgRS, RS;
  struct Pos {
    const float* col;
  };
  __device__ Pos at(int m) const { return Pos{w + (i64)m * RS}; }
  __device__ float load(const Pos& p, int kk) const {
    const int k = kk / RS, rs = kk - k * RS;
    return p.col[(i64)k * CgRS + rs];
  }
};

// B(kk=(k,r,s), n=(img,h,w)) = dy[img, g*Kg + k, p, q] where h + pt - r*dh = p*sh (same for w), else 0
struct BwdDataDy {
  static const bool kfast = false;
  const float* dy;
  ConvShape s;
  int g;
  struct Pos {
    const float* img;
    int hp, wp;
  };
  __device__ Pos at(int n) const {
    const int img = n / s.HW, hw = n - img * s.HW, h = hw / s.W, w = hw - h * s.W;
    return Pos{dy + ((i64)img * s.K + (i64)g * s.Kg) * s.PQ, h + s.pt, w + s.pl};
  }
  __device__ float load(const Pos& p, int kk) const {
    const int k = kk / s.RS, rs = kk - k * s.RS, r = rs / s.S, sx = rs - r * s.S;
    const int ph = p.hp - r * s.dh, pw = p.wp - sx * s.dw;
    if (ph < 0 || pw < 0) return 0.f;
    const int oh = ph / s.sh, ow = pw / s.sw;
    if (oh * s.sh != ph || ow * s.sw != pw || oh >= s.P || ow >= s.Q) return 0.f;
    return p.img[(i64)k * s.PQ + oh * s.Q + ow];
  }
};

// dx[img, g*Cg + m, h, w] = acc
struct BwdDataStore {
  float* dx;
  ConvShape s;
  int g;
  struct Pos {
    float* out;
  };
  __device__ Pos at(int n) const {
    const int img = n / s.HW, hw = n - img * s.HW;
    return Pos{dx + (i64)img * s.C * s.HW + hw};
  }
  __device__ void store(int m, const Pos& p, float acc) const { p.out[((i64)g * s.Cg + m) * s.HW] = acc; }
};

// grid (ceil(N*H*W/64), ceil(Cg/64), G), 256 threads
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    conv2d_backward_data(const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx,
                         CONV_SHAPE_ARGS) {
  const ConvShape s = CONV_SHAPE_CALL;
  const int g = blockIdx.z;
  BwdDataW la{w + (i64)g * s.Kg * s.Cg * s.RS, s.Cg * s.RS, s.RS};
  BwdDataDy lb{dy, s, g};
  BwdDataStore ep{dx, s, g};
  gemm_tile(la, lb, ep, s.Cg, s.N * s.HW, 0, s.Kg * s.RS);
}

// ---- backward: weight gradient ---------------------------------------------------------------------------

// A(m=k, kk=(img,p,q)) = dy[img, g*Kg + k, p, q]
struct BwdWDy {
  static const bool kfast = true;
  const float* dy;
  int K, PQ, g, Kg;
  struct Pos {
    const float* chan;
  };
  __device__ Pos at(int m) const { return Pos{dy + ((i64)g * Kg + m) * PQ}; }
  __device__ float load(const Pos& p, int kk) const {
    const int img = kk / PQ, pq = kk - img * PQ;
    return p.chan[(i64)img * K * PQ + pq];
  }
};

// B(kk=(img,p,q), n=(c,r,s)) = x[img, g*Cg + c, p*sh - pt + r*dh, q*sw - pl + s*dw], 0 in the padding
struct BwdWX {
  static const bool kfast = true;
  const float* x;
  ConvShape s;
  int g;
  struct Pos {
    const float* chan;
    int roff, soff;
  };
  __device__ Pos at(int n) const {
    const int c = n / s.RS, rs = n - c * s.RS, r = rs / s.S, sx = rs - r * s.S;
    return Pos{x + ((i64)g * s.Cg + c) * s.HW, r * s.dh - s.pt, sx * s.dw - s.pl};
  }
  __device__ float load(const Pos& p, int kk) const {
    const int img = kk / s.PQ, pq = kk - img * s.PQ, oh = pq / s.Q, ow = pq - oh * s.Q;
    const int h = oh * s.sh + p.roff, w = ow * s.sw + p.soff;
    return ((unsigned)h < (unsigned)s.H && (unsigned)w < (unsigned)s.W)
               ? p.chan[(i64)img * s.C * s.HW + h * s.W + w]
               : 0.f;
  }
};

// ws[split][g*Kg + m][n] (the flat dw layout, one copy per split)
struct BwdWStore {
  float* ws;
  int CgRS, Kg, g;
  struct Pos {
    int n;
  };
  __device__ Pos at(int n) const { return Pos{n}; }
  __device__ void store(int m, const Pos& p, float acc) const { ws[((i64)g * Kg + m) * CgRS + p.n] = acc; }
};

// grid (ceil(Cg*R*S/64), ceil(Kg/64), G*splits), 256 threads; ws holds splits copies of dw (K*Cg*R*S each)
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    conv2d_backward_weight(const float* __restrict__ dy, const float* __restrict__ x, float* __restrict__ ws,
                           CONV_SHAPE_ARGS, i64 splits, i64 chunk) {
  const ConvShape s = CONV_SHAPE_CALL;
  const int g = blockIdx.z / (int)splits, split = blockIdx.z % (int)splits;
  const int CgRS = s.Cg * s.RS, Kd = s.N * s.PQ;
  const int k_begin = split * (int)chunk;
  const int k_end = k_begin + (int)chunk < Kd ? k_begin + (int)chunk : Kd;
  BwdWDy la{dy, s.K, s.PQ, g, s.Kg};
  BwdWX lb{x, s, g};
  BwdWStore ep{ws + (i64)split * s.K * CgRS, CgRS, s.Kg, g};
  gemm_tile(la, lb, ep, s.Kg, CgRS, k_begin, k_end);
}

// the bias gradient is channel_partial_sum + sum_partials from reduce.cuh
