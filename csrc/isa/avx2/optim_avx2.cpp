// AVX2 optimizer steps (see optim.cpp for the math): eight floats per step, the tail through masked loads
// and stores, the same operations in the same order as the scalar loops. Only intrinsics and fixed-width
// integers here (no shared templates that could be merged with the portable code's).
#pragma GCC target("avx2,fma")
// GCC would otherwise fuse the multiply-adds below into FMAs, which round once instead of twice.
#pragma GCC optimize("fp-contract=off")
#include <immintrin.h>
#include <stdint.h>
#include "isa/avx2/avx2_common.h"

namespace cnnkern {
namespace avx2 {
namespace {

// Whole blocks use plain loads and stores; the tail of fewer than eight floats is loaded through a mask and
// stored by store_first (a masked store is microcoded on AMD Zen).
struct Whole {
  __m256 load(const float* p) const { return _mm256_loadu_ps(p); }
  void store(float* p, __m256 v) const { _mm256_storeu_ps(p, v); }
};
struct Tail {
  __m256i mask;
  int64_t n;  // the lanes of the tail
  __m256 load(const float* p) const { return _mm256_maskload_ps(p, mask); }
  void store(float* p, __m256 v) const { store_first(p, v, n); }
};

// Calls step(i, io) for each 8-float block starting at i, io being Whole or, for the tail, Tail.
template <typename Step>
inline void blocks(int64_t n, Step step) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) step(i, Whole{});
  if (i < n) step(i, Tail{tail_mask(n - i), n - i});
}

}  // namespace

void sgd(float* param, const float* grad, float* velocity, int64_t n, float lr, float momentum, bool nesterov,
         float weight_decay) {
  const __m256 vlr = _mm256_set1_ps(lr), vmom = _mm256_set1_ps(momentum), vwd = _mm256_set1_ps(weight_decay);
  const bool decay = weight_decay != 0.0f;
  blocks(n, [&](int64_t i, auto io) {
    const __m256 p = io.load(param + i);
    __m256 g = io.load(grad + i);
    if (decay) g = _mm256_add_ps(g, _mm256_mul_ps(vwd, p));
    if (velocity) {
      const __m256 v = _mm256_add_ps(_mm256_mul_ps(vmom, io.load(velocity + i)), g);
      io.store(velocity + i, v);
      g = nesterov ? _mm256_add_ps(g, _mm256_mul_ps(vmom, v)) : v;
    }
    io.store(param + i, _mm256_sub_ps(p, _mm256_mul_ps(vlr, g)));
  });
}

void adam(float* param, const float* grad, float* m, float* v, int64_t n, float beta1, float omb1,
          float beta2, float omb2, float weight_decay, float step_size, float c2, float eps, float decay) {
  const __m256 b1 = _mm256_set1_ps(beta1), c1b1 = _mm256_set1_ps(omb1), b2 = _mm256_set1_ps(beta2),
               c1b2 = _mm256_set1_ps(omb2), vwd = _mm256_set1_ps(weight_decay),
               vstep = _mm256_set1_ps(step_size), vc2 = _mm256_set1_ps(c2), veps = _mm256_set1_ps(eps);
  const __m256 vdecay = _mm256_set1_ps(decay);
  const bool l2 = weight_decay != 0.0f, decoupled = decay != 1.0f;
  blocks(n, [&](int64_t i, auto io) {
    __m256 p = io.load(param + i);
    if (decoupled) p = _mm256_mul_ps(p, vdecay);
    __m256 g = io.load(grad + i);
    if (l2) g = _mm256_add_ps(g, _mm256_mul_ps(vwd, p));
    const __m256 mi = _mm256_add_ps(_mm256_mul_ps(b1, io.load(m + i)), _mm256_mul_ps(c1b1, g));
    const __m256 vi =
        _mm256_add_ps(_mm256_mul_ps(b2, io.load(v + i)), _mm256_mul_ps(_mm256_mul_ps(c1b2, g), g));
    io.store(m + i, mi);
    io.store(v + i, vi);
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), vc2), veps);
    io.store(param + i, _mm256_sub_ps(p, _mm256_mul_ps(vstep, _mm256_div_ps(mi, denom))));
  });
}

void rmsprop(float* param, const float* grad, float* sq, float* buf, float* gavg, int64_t n, float lr,
             float rho, float omr, float eps, float weight_decay, float momentum) {
  const __m256 vlr = _mm256_set1_ps(lr), vrho = _mm256_set1_ps(rho), vomr = _mm256_set1_ps(omr),
               veps = _mm256_set1_ps(eps), vwd = _mm256_set1_ps(weight_decay),
               vmom = _mm256_set1_ps(momentum);
  const bool decay = weight_decay != 0.0f;
  blocks(n, [&](int64_t i, auto io) {
    const __m256 p = io.load(param + i);
    __m256 g = io.load(grad + i);
    if (decay) g = _mm256_add_ps(g, _mm256_mul_ps(vwd, p));
    const __m256 s =
        _mm256_add_ps(_mm256_mul_ps(vrho, io.load(sq + i)), _mm256_mul_ps(_mm256_mul_ps(vomr, g), g));
    io.store(sq + i, s);
    __m256 d;
    if (gavg) {
      const __m256 a = _mm256_add_ps(_mm256_mul_ps(vrho, io.load(gavg + i)), _mm256_mul_ps(vomr, g));
      io.store(gavg + i, a);
      d = _mm256_add_ps(_mm256_sqrt_ps(_mm256_sub_ps(s, _mm256_mul_ps(a, a))), veps);
    } else {
      d = _mm256_add_ps(_mm256_sqrt_ps(s), veps);
    }
    const __m256 q = _mm256_div_ps(g, d);
    if (buf) {
      const __m256 b = _mm256_add_ps(_mm256_mul_ps(vmom, io.load(buf + i)), q);
      io.store(buf + i, b);
      io.store(param + i, _mm256_sub_ps(p, _mm256_mul_ps(vlr, b)));
    } else {
      io.store(param + i, _mm256_sub_ps(p, _mm256_mul_ps(vlr, q)));
    }
  });
}

}  // namespace avx2
}  // namespace cnnkern
