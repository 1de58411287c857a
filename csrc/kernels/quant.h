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

}  // namespace cnnkern
