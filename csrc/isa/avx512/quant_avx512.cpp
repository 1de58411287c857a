#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")
// (requant_avx512.h: GCC 12 reports the intrinsics' own undefined pass-through operands as "may be used
// uninitialized"; those operands are never read)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// AVX-512 VNNI int8 implicit GEMM (kernels/quant.h). Register tiles of MR rows x NB blocks of 16 channels,
// MR * NB zmm accumulators (6 x 4 or 8 x 1..3, up to 24 of the 32 registers): each 4-step of the reduction
// loads NB weight vectors once, then per row broadcasts its 4 codes (folded into vpdpbusd's {1to16}
// operand) and runs NB vpdpbusd (4 u8 x s8 products summed into each int32 lane, no intermediate
// saturation). Called only where the CPU has AVX512_VNNI (quant.cpp checks).
// q8_conv_requant_vnni runs the same tiles with the requantization (and a 1x1, 1x2 / 2x1 or 2x2 pool's max)
// on the registers, so that the sums are never stored. Also q8_conv_fused_vnni (quant.h): a one-channel
// conv's sums, pool max and requantization per output cell.
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <vector>
#include <type_traits>
#include <utility>

#include "kernels/quant.h"
#include "isa/avx512/requant_avx512.h"

namespace cnnkern {

namespace {

// g with one 4-step per tap: tap t's csteps steps as taps of their own (offset toff[t] + 4 s; the packed
// weights are already in that order), so that the tile's loop reads each step's offset and adds it to row
// pointers set once (per tap, the MR row pointers cost as much as a one-channel conv's few steps)
Q8Gemm flat(const Q8Gemm& g) {
  thread_local std::vector<int64_t> off;
  off.resize(static_cast<size_t>(g.ntaps * g.csteps));
  for (int64_t t = 0; t < g.ntaps; ++t)
    for (int64_t s = 0; s < g.csteps; ++s) off[static_cast<size_t>(t * g.csteps + s)] = g.toff[t] + 4 * s;
  return {off.data(), g.ntaps * g.csteps, 1, g.w, g.nblocks};
}

// the MR x NB tile's int32 sums of a flat g, plus init (per block), in registers (every loop over the tile
// unrolled: GCC keeps an array it indexes in a loop in memory, with loads and stores around the reduction)
template <int MR, int NB>
__attribute__((always_inline)) inline void sums(const uint8_t* const* rows, int64_t m, const Q8Gemm& g,
                                                const int8_t* w, const __m512i (&init)[NB],
                                                __m512i (&acc)[MR][NB]) {
  const int64_t wblock = g.ntaps * 64;
  const uint8_t* a[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) a[r] = rows[r < m ? r : m - 1];  // tail rows repeat the last
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) acc[r][b] = init[b];
  for (int64_t t = 0; t < g.ntaps; ++t) {
    const int64_t o = g.toff[t];
    __m512i wv[NB];
#pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) wv[b] = _mm512_loadu_si512(w + b * wblock + t * 64);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      int32_t four;
      std::memcpy(&four, a[r] + o, 4);
      const __m512i av = _mm512_set1_epi32(four);
#pragma GCC unroll 4
      for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], av, wv[b]);
    }
  }
}

template <int MR, int NB>
void tile(const uint8_t* const* rows, int64_t m, const Q8Gemm& g, const int8_t* w, int32_t* c, int64_t ldc) {
  __m512i zero[NB], acc[MR][NB];
#pragma GCC unroll 4
  for (int b = 0; b < NB; ++b) zero[b] = _mm512_setzero_si512();
  sums<MR, NB>(rows, m, g, w, zero, acc);
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
    if (r < m)
#pragma GCC unroll 4
      for (int b = 0; b < NB; ++b) _mm512_storeu_si512(c + r * ldc + b * 16, acc[r][b]);
}

// f(std::integral_constant<int, i>{}) for i = 0 .. N-1, written out: the register tile's indices are then
// constants, so that its sums stay in registers (a loop with a run-time exit made GCC keep them in memory)
template <int N, typename F, int... I>
__attribute__((always_inline)) inline void unroll(F&& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}
template <int N, typename F>
__attribute__((always_inline)) inline void unroll(F&& f) {
  unroll<N>(f, std::make_integer_sequence<int, N>{});
}

// The fused epilogue (q8_conv_requant_vnni): each WIN consecutive rows are one pool window, their max
// taken and requantized in registers; window c's codes of channels [k0, k0 + 16 NB) go to out[c * n + k].
// m is a multiple of WIN: the rows past it (repeating the last) are whole windows, skipped.
template <int MR, int NB, int WIN>
void tile_requant(const uint8_t* const* rows, int64_t m, const Q8Gemm& g, const int8_t* w,
                  const RequantRow& q, int64_t k0, int64_t n, uint8_t* out) {
  static_assert(MR % WIN == 0, "a register tile holds whole pool windows");
  // the sums start at the channels' base, so that they end as the accumulators (the 32-bit adds wrap to
  // the exact value; the max of a window's accumulators is its sums' max plus base, as the format keeps
  // each inside int32)
  __m512i base[NB], acc[MR][NB];
#pragma GCC unroll 4
  for (int b = 0; b < NB; ++b) base[b] = _mm512_load_si512(q.blocks[k0 / 16 + b].base);
  sums<MR, NB>(rows, m, g, w, base, acc);
  unroll<MR / WIN>([&](auto c) __attribute__((always_inline)) {
    unroll<NB>([&](auto b) __attribute__((always_inline)) {
      constexpr int C = decltype(c)::value, B = decltype(b)::value;
      const int64_t k = k0 + B * 16;
      if (C * WIN >= m || k >= n) return;
      __m512i top = acc[C * WIN][B];
      unroll<WIN - 1>([&](auto r) __attribute__((always_inline)) {
        top = _mm512_max_epi32(top, acc[C * WIN + 1 + decltype(r)::value][B]);
      });
      const __m128i codes = avx512q::requant16(top, q, k);
      if (n - k >= 16)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + C * n + k), codes);
      else
        _mm_mask_storeu_epi8(out + C * n + k, avx512q::lanes(n - k), codes);
    });
  });
}

template <int MR, int NB, int WIN>
void rows_requant(const uint8_t* const* rows, int64_t m, const Q8Gemm& g, int64_t b0, const RequantRow& q,
                  int64_t n, uint8_t* out) {
  const int8_t* w = g.w + b0 * g.ntaps * 64;
  for (int64_t i0 = 0; i0 < m; i0 += MR)
    tile_requant<MR, NB, WIN>(rows + i0, m - i0 < MR ? m - i0 : MR, g, w, q, b0 * 16, n, out + i0 / WIN * n);
}

// 16-channel blocks in fours (6 rows, or 4 for a 2x2 window), then 3 / 2 / 1 (8 rows; 12 for two blocks under
// a 2x2 window: a one-channel conv's few steps leave the tile's fixed costs to amortize), as q8_igemm_vnni
template <int WIN>
void conv_requant(const uint8_t* const* rows, int64_t m, const Q8Gemm& g, const RequantRow& q, int64_t n,
                  uint8_t* out) {
  constexpr int kRows4 = WIN == 4 ? 4 : 6;
  int64_t b0 = 0;
  for (; b0 + 4 <= g.nblocks; b0 += 4) rows_requant<kRows4, 4, WIN>(rows, m, g, b0, q, n, out);
  switch (g.nblocks - b0) {
    case 3:
      rows_requant<8, 3, WIN>(rows, m, g, b0, q, n, out);
      break;
    case 2:
      rows_requant<WIN == 4 ? 12 : 8, 2, WIN>(rows, m, g, b0, q, n, out);
      break;
    case 1:
      rows_requant<8, 1, WIN>(rows, m, g, b0, q, n, out);
      break;
    default:
      break;
  }
}

template <int MR, int NB>
void rows_of(const uint8_t* const* rows, int64_t m, const Q8Gemm& g, int64_t b0, int32_t* c, int64_t ldc) {
  const int8_t* w = g.w + b0 * g.ntaps * g.csteps * 64;
  for (int64_t i0 = 0; i0 < m; i0 += MR)
    tile<MR, NB>(rows + i0, m - i0 < MR ? m - i0 : MR, g, w, c + i0 * ldc + b0 * 16, ldc);
}

}  // namespace

void q8_igemm_vnni(const uint8_t* const* rows, int64_t m, const Q8Gemm& packed, int32_t* c, int64_t ldc) {
  const Q8Gemm g = flat(packed);
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

bool q8_conv_requant_vnni(const uint8_t* const* rows, int64_t m, int64_t win, const Q8Gemm& packed,
                          const RequantRow& q, int64_t n, uint8_t* out) {
  if (win != 1 && win != 2 && win != 4) return false;
  const Q8Gemm g = packed.csteps == 1 ? packed : flat(packed);
  switch (win) {
    case 1:
      conv_requant<1>(rows, m, g, q, n, out);
      return true;
    case 2:
      conv_requant<2>(rows, m, g, q, n, out);
      return true;
    case 4:
      conv_requant<4>(rows, m, g, q, n, out);
      return true;
    default:
      return false;
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
