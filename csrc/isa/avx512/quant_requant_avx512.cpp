#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq")
// Also the AVX-512 input quantization (quant.cpp's quantize_input_q8).
// AVX-512 requantization (kernels/quant.h): 16 channels per step (masked at the tail), the arithmetic of
// requant_avx512.h.
// In its own file (not quant_avx512.cpp's VNNI target): the avx512 path runs it on CPUs without VNNI too.
// GCC 12 reports the intrinsics' own undefined pass-through operands (avx512fintrin.h's __Y) as
// "may be used uninitialized" here; those operands are never read.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstdint>

#include "kernels/quant.h"
#include "isa/avx512/requant_avx512.h"

namespace cnnkern {

void q8_requant_avx512(const int32_t* sum, int64_t ld, int64_t count, int64_t n, const RequantRow& q,
                       uint8_t* out) {
  for (int64_t k = 0; k < n; k += 16) {
    const __mmask16 mask = avx512q::lanes(n - k);
    __m512i top = _mm512_maskz_loadu_epi32(mask, sum + k);
    for (int64_t i = 1; i < count; ++i)
      top = _mm512_max_epi32(top, _mm512_maskz_loadu_epi32(mask, sum + i * ld + k));
    const __m512i acc = _mm512_add_epi32(top, _mm512_load_si512(q.blocks[k / 16].base));
    _mm_mask_storeu_epi8(out + k, mask, avx512q::requant16(acc, q, k));
  }
}

void q8_quantize_input_avx512(const float* x, int64_t begin, int64_t end, double scale, int64_t zero,
                              uint8_t* y) {
  const __m512d d = _mm512_set1_pd(scale), lo = _mm512_set1_pd(-1048576.0), hi = _mm512_set1_pd(1048576.0),
                rnd = _mm512_set1_pd(6755399441055744.0), zz = _mm512_set1_pd(static_cast<double>(zero)),
                nil = _mm512_setzero_pd(), top = _mm512_set1_pd(127);
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
    v = _mm512_min_pd(_mm512_max_pd(_mm512_div_pd(v, d), lo), hi);
    v = _mm512_add_pd(_mm512_sub_pd(_mm512_add_pd(v, rnd), rnd), zz);
    const __m256i codes = _mm512_cvttpd_epi32(_mm512_min_pd(_mm512_max_pd(v, nil), top));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(y + i), _mm256_cvtepi32_epi8(codes));
  }
  for (; i < end; ++i) {  // the same steps, one lane
    double v = static_cast<double>(x[i]) / scale;
    v = v < -1048576.0 ? -1048576.0 : v > 1048576.0 ? 1048576.0 : v;
    v = (v + 6755399441055744.0) - 6755399441055744.0 + static_cast<double>(zero);
    y[i] = static_cast<uint8_t>(v < 0 ? 0 : v > 127 ? 127 : v);
  }
}

}  // namespace cnnkern
