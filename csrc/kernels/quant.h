// The int8 inference kernels (cnnkern.compress; the specification is cnnkern/backends/reference/quant.py).
// Their one inner product: an unsigned-by-signed 8-bit GEMM with int32 sums,
//   c[i][n] = sum_t a[i*lda + t] * w[n][t],  i < m, n < 16 * nblocks, t < kp (a multiple of 4),
// the weights packed as [nblocks][kp/4][16 channels][4 taps] so that one 32-bit lane holds the 4 taps of one
// channel: the operand layout of vpdpbusd and of vpmaddubsw + vpmaddwd. a holds 7-bit codes (<= 127), so
// vpmaddubsw's pairs (<= 2 * 127 * 127) never saturate and every path is exact.
#pragma once

#include <cstdint>

namespace cnnkern {

void q8_gemm_scalar(const uint8_t* a, int64_t lda, int64_t m, const int8_t* w, int64_t kp, int64_t nblocks,
                    int32_t* c, int64_t ldc);
void q8_gemm_avx2(const uint8_t* a, int64_t lda, int64_t m, const int8_t* w, int64_t kp, int64_t nblocks,
                  int32_t* c, int64_t ldc);
void q8_gemm_vnni(const uint8_t* a, int64_t lda, int64_t m, const int8_t* w, int64_t kp, int64_t nblocks,
                  int32_t* c, int64_t ldc);

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
};
inline uint8_t requant_one(int32_t sum, const RequantRow& q, int64_t k) {
  const int64_t acc = static_cast<int32_t>(static_cast<uint32_t>(sum) + static_cast<uint32_t>(q.base[k]));
  const int64_t v = q.zero + ((acc * q.mult[k] + q.round[k]) >> q.shift[k]);
  return static_cast<uint8_t>(v < q.lo[k] ? q.lo[k] : v > 127 ? 127 : v);
}
void q8_requant_scalar(const int32_t* sum, int64_t n, const RequantRow& q, uint8_t* out);
void q8_requant_avx2(const int32_t* sum, int64_t n, const RequantRow& q, uint8_t* out);
void q8_requant_avx512(const int32_t* sum, int64_t n, const RequantRow& q, uint8_t* out);

}  // namespace cnnkern
