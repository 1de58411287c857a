#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")
// AVX-512 VNNI int8 implicit GEMM (kernels/quant.h). Register tiles of MR rows x NB blocks of 16 channels,
// MR * NB zmm accumulators (6 x 4 or 8 x 1..3, up to 24 of the 32 registers): each 4-step of the reduction
// loads NB weight vectors once, then per row broadcasts its 4 codes (folded into vpdpbusd's {1to16}
// operand) and runs NB vpdpbusd (4 u8 x s8 products summed into each int32 lane, no intermediate
// saturation). Called only where the CPU has AVX512_VNNI (quant.cpp checks).
// Also q8_conv_fused_vnni (quant.h): a one-channel conv's sums, pool max and requantization per output cell.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/quant.h"

namespace cnnkern {

namespace {

template <int MR, int NB>
void tile(const uint8_t* const* rows, int64_t m, const Q8Gemm& g, const int8_t* w, int32_t* c, int64_t ldc) {
  const int64_t wblock = g.ntaps * g.csteps * 64, cs = g.csteps;
  __m512i acc[MR][NB];
  for (int r = 0; r < MR; ++r)
    for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_setzero_si512();
  for (int64_t t = 0; t < g.ntaps; ++t) {
    const uint8_t* a[MR];
    for (int r = 0; r < MR; ++r) a[r] = rows[r < m ? r : m - 1] + g.toff[t];  // tail rows repeat the last
    const int8_t* wt = w + t * cs * 64;
    for (int64_t s = 0; s < cs; ++s) {
      __m512i wv[NB];
      for (int b = 0; b < NB; ++b) wv[b] = _mm512_loadu_si512(wt + b * wblock + s * 64);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        int32_t four;
        std::memcpy(&four, a[r] + 4 * s, 4);
        const __m512i av = _mm512_set1_epi32(four);
        for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], av, wv[b]);
      }
    }
  }
  for (int r = 0; r < MR; ++r)
    if (r < m)
      for (int b = 0; b < NB; ++b) _mm512_storeu_si512(c + r * ldc + b * 16, acc[r][b]);
}

template <int MR, int NB>
void rows_of(const uint8_t* const* rows, int64_t m, const Q8Gemm& g, int64_t b0, int32_t* c, int64_t ldc) {
  const int8_t* w = g.w + b0 * g.ntaps * g.csteps * 64;
  for (int64_t i0 = 0; i0 < m; i0 += MR)
    tile<MR, NB>(rows + i0, m - i0 < MR ? m - i0 : MR, g, w, c + i0 * ldc + b0 * 16, ldc);
}

}  // namespace

void q8_igemm_vnni(const uint8_t* const* rows, int64_t m, const Q8Gemm& g, int32_t* c, int64_t ldc) {
  int64_t b0 = 0;
  for (; b0 + 4 <= g.nblocks; b0 += 4) rows_of<6, 4>(rows, m, g, b0, c, ldc);
  switch (g.nblocks - b0) {
    case 3:
      rows_of<8, 3>(rows, m, g, b0, c, ldc);
      break;
    case 2:
      rows_of<8, 2>(rows, m, g, b0, c, ldc);
      break;
    case 1:
      rows_of<8, 1>(rows, m, g, b0, c, ldc);
      break;
    default:
      break;
  }
}

}  // namespace cnnkern

namespace cnnkern {

namespace {

// one cell's int32 sums of NB blocks of 16 channels: the max over its window's pixels, taken two pixels at
// a time (2 NB independent vpdpbusd chains)
template <int NB>
void cell_sums(const uint8_t* const* pix, int64_t win, const Q8Gemm& g, const int8_t* w, int32_t* sums) {
  const int64_t wblock = g.ntaps * g.csteps * 64;
  __m512i top[NB];
  for (int b = 0; b < NB; ++b) top[b] = _mm512_set1_epi32(INT32_MIN);
  for (int64_t i = 0; i < win; i += 2) {
    const uint8_t* p0 = pix[i];
    const uint8_t* p1 = pix[i + 1 < win ? i + 1 : i];
    __m512i a0[NB], a1[NB];
    for (int b = 0; b < NB; ++b) a0[b] = a1[b] = _mm512_setzero_si512();
    for (int64_t t = 0; t < g.ntaps; ++t)
      for (int64_t s = 0; s < g.csteps; ++s) {
        const int64_t o = g.toff[t] + 4 * s, wo = (t * g.csteps + s) * 64;
        int32_t f0, f1;
        std::memcpy(&f0, p0 + o, 4);
        std::memcpy(&f1, p1 + o, 4);
        const __m512i x0 = _mm512_set1_epi32(f0), x1 = _mm512_set1_epi32(f1);
        for (int b = 0; b < NB; ++b) {
          const __m512i wv = _mm512_loadu_si512(w + b * wblock + wo);
          a0[b] = _mm512_dpbusd_epi32(a0[b], x0, wv);
          a1[b] = _mm512_dpbusd_epi32(a1[b], x1, wv);
        }
      }
    for (int b = 0; b < NB; ++b) top[b] = _mm512_max_epi32(top[b], _mm512_max_epi32(a0[b], a1[b]));
  }
  for (int b = 0; b < NB; ++b) _mm512_storeu_si512(sums + b * 16, top[b]);
}

}  // namespace

void q8_conv_fused_vnni(const uint8_t* const* pix, int64_t cells, int64_t win, const Q8Gemm& g,
                        const RequantRow& q, int64_t n, uint8_t* out) {
  const int64_t wblock = g.ntaps * g.csteps * 64;
  alignas(64) int32_t sums[256];
  for (int64_t c0 = 0; c0 < cells; ++c0) {
    const uint8_t* const* cp = pix + c0 * win;
    for (int64_t b = 0; b < g.nblocks; b += 2) {  // (sums: 16 blocks at most, see quant_conv.cpp)
      if (g.nblocks - b >= 2)
        cell_sums<2>(cp, win, g, g.w + b * wblock, sums + b * 16);
      else
        cell_sums<1>(cp, win, g, g.w + b * wblock, sums + b * 16);
    }
    q8_requant_avx512(sums, 0, 1, n, q, out + c0 * n);
  }
}

}  // namespace cnnkern
