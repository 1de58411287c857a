// The int8 inference kernels (cnnkern.compress; the specification is cnnkern/backends/reference/quant.py).
// Their one inner product: an unsigned-by-signed 8-bit implicit GEMM with int32 sums,
//   c[i][n] = sum_{t < ntaps} sum_{u < 4 csteps} rows[i][toff[t] + u] * w[n][t][u],  i < m, n < 16 nblocks,
// row i's operand read in place at rows[i] + toff[t] (a conv's padded input pixel plus a kernel tap's offset,
// or an im2col / dense row with one tap), the weights packed as [nblocks][ntaps][csteps][16 channels][4]
// so that one 32-bit lane holds 4 reduction steps of one channel: the operand layout of vpdpbusd and of
// vpmaddubsw + vpmaddwd. The codes are 7-bit (<= 127), so vpmaddubsw's pairs (<= 2 * 127 * 127) never
// saturate and every path is exact. c has ldc >= 16 nblocks int32 per row.
#pragma once

#include <cstdint>

namespace cnnkern {

struct Q8Gemm {
  const int64_t* toff;  // ntaps byte offsets added to every row pointer
  int64_t ntaps, csteps;
  const int8_t* w;  // packed as above
  int64_t nblocks;
};
void q8_igemm_scalar(const uint8_t* const* rows, int64_t m, const Q8Gemm& g, int32_t* c, int64_t ldc);
void q8_igemm_avx2(const uint8_t* const* rows, int64_t m, const Q8Gemm& g, int32_t* c, int64_t ldc);
void q8_igemm_vnni(const uint8_t* const* rows, int64_t m, const Q8Gemm& g, int32_t* c, int64_t ldc);

// The direct kernel of a one-channel convolution (groups 1, e.g. a grey image's first layer) on the scalar
// path, where the GEMM's 4-byte groups would mostly meet zero weights: c[i][k] = sum_t pix[i][toff[t]] *
// w[k][t] over the taps in pairs, the weights as int16 pairs (w[k][2p], w[k][2p+1]) in lane k of pair p (an
// odd tap count's last pair repeats an offset against a zero weight). c has ldc >= kp int32 per row. The
// SIMD paths keep the implicit GEMM for one channel: measured faster there (the VNNI GEMM runs 3 vpdpbusd
// per 16 channels for a 3x3 kernel, the fewest 4-byte groups that hold 9 taps; vpmaddwd pairs need 5
// vpmaddwd + 5 vpaddd and a broadcast per pair).
struct Q8C1 {
  const int64_t* toff;  // 2 npairs byte offsets added to every pixel pointer
  int64_t npairs;
  const int16_t* w;  // [npairs][kp][2]
  int64_t kp;        // the channels padded to a multiple of 16 (zero weights beyond K)
};
void q8_conv_c1_scalar(const uint8_t* const* pix, int64_t m, const Q8C1& g, int32_t* c, int64_t ldc);

// The AVX-512 constants of 16 channels (isa/avx512/requant_avx512.h; lanes past the channels: any defined
// values). The wide form: the int64 arithmetic as written (even channels' values, then odd ones'). The
// narrow form, for a group whose every channel allows it (RequantRow::narrow): acc first clamped to
// [acc_lo, acc_hi], the int32 accumulators whose result lies inside [lo, 127], so that
// t = (acc * mult) >> (shift - 1) fits int32 and the result is zero + ((t + 1) >> 1) (the same floor: the
// round bit 2**(shift-1) added after the shift); it allows a channel when the clamp loses nothing, i.e.
// the result takes the values lo and 127 themselves (steps of at most 1, as multiplier < 2**shift gives)
// or is never outside them.
struct alignas(64) Requant16 {
  int64_t round[16], shift[16], lo[16];  // wide: round, shift, lo - zero (even channels, then odd)
  int64_t shift1[16];                    // narrow: shift - 1 (even, then odd)
  int32_t base[16], mult[16];            // both forms: base and multiplier by channel
  int32_t mult_odd[16];                  // narrow: the odd channels' multipliers in the even dwords
  int32_t acc_lo[16], acc_hi[16];        // narrow: the clamp of acc
};

// The requantization of one output pixel's channels [0, n) (reference: requantize), as per-channel arrays:
// y[k] = clamp(zero + ((acc32[k] * mult[k] + round[k]) >> shift[k]), lo[k], 127) with acc32 = sum + base
// (the bias less x_zero * the channel's weight sum), which the format keeps inside int32; base is stored
// wrapped to int32 so that the 32-bit add wraps to the exact value.
struct RequantRow {
  const int32_t* base;
  const int32_t* mult;
  const int64_t* round;
  const int64_t* shift;
  const int64_t* lo;
  int64_t zero;
  const Requant16* blocks;  // the AVX-512 form: per 16 channels
  bool narrow;              // every channel allows Requant16's narrow form
};
inline uint8_t requant_one(int32_t sum, const RequantRow& q, int64_t k) {
  const int64_t acc = static_cast<int32_t>(static_cast<uint32_t>(sum) + static_cast<uint32_t>(q.base[k]));
  const int64_t v = q.zero + ((acc * q.mult[k] + q.round[k]) >> q.shift[k]);
  return static_cast<uint8_t>(v < q.lo[k] ? q.lo[k] : v > 127 ? 127 : v);
}
// The q8_requant_* functions requantize the elementwise max of `count` rows of sums (stride ld): the fused
// max pool, taken on the accumulators (the requantization is monotone, so the max of the codes is the code
// of the max); count = 1 without a pool.
inline uint8_t requant_max(const int32_t* sum, int64_t ld, int64_t count, const RequantRow& q, int64_t k) {
  int32_t v = sum[k];
  for (int64_t i = 1; i < count; ++i) v = sum[i * ld + k] > v ? sum[i * ld + k] : v;
  return requant_one(v, q, k);
}
void q8_requant_scalar(const int32_t* sum, int64_t ld, int64_t count, int64_t n, const RequantRow& q,
                       uint8_t* out);
void q8_requant_avx2(const int32_t* sum, int64_t ld, int64_t count, int64_t n, const RequantRow& q,
                     uint8_t* out);
void q8_requant_avx512(const int32_t* sum, int64_t ld, int64_t count, int64_t n, const RequantRow& q,
                       uint8_t* out);

// The VNNI path's one-channel conv with its epilogue fused (q8_igemm_vnni's packing and reads, groups 1):
// per output cell, the `win` pixels pix[cell * win ..] of its pool window (win = 1: no pool) summed with
// vpdpbusd, their max taken and requantized in registers, out[cell * n ..] its n codes; the accumulators
// never leave the registers (a one-channel layer is otherwise bound by their stores and reloads). Runs the
// pool windows q8_conv_requant_vnni does not take (that one is faster on its own: 8 pixels per tile).
void q8_conv_fused_vnni(const uint8_t* const* pix, int64_t cells, int64_t win, const Q8Gemm& g,
                        const RequantRow& q, int64_t n, uint8_t* out);

// The VNNI GEMM with its epilogue fused: the m rows' sums (q8_igemm_vnni's tiles) kept in registers, the max
// of each `win` consecutive rows (a pool window; win = 1: no pool) requantized there, window c's n codes
// written to out[c * n ..]; m is a multiple of win. Runs win 1, 2 and 4 (a register tile holds whole
// windows) and returns false, doing nothing, for any other. Fastest with g in one 4-step per tap (csteps 1:
// tap t's steps s as taps at toff[t] + 4 s), which the others are turned into first.
bool q8_conv_requant_vnni(const uint8_t* const* rows, int64_t m, int64_t win, const Q8Gemm& g,
                          const RequantRow& q, int64_t n, uint8_t* out);

// The AVX-512 body of quantize_input_q8 (quant.cpp) over x[begin, end): 8 lanes per step, same arithmetic.
void q8_quantize_input_avx512(const float* x, int64_t begin, int64_t end, double scale, int64_t zero,
                              uint8_t* y);

}  // namespace cnnkern
