// Packed single-precision GEMM: C (M,N) = A (M,K) · B (K,N), or C += A·B.
//
// The BLIS loop nest: B is packed per (NC x KC) block into NR-wide slivers, A is packed once over the full K
// into MR-tall slivers (so a packed weight matrix can be reused across every image of a batch), and a
// register-blocked MR x NR micro-kernel (scalar, AVX2+FMA, AVX-512) runs over the tiles. Packing pads the
// last sliver with zeros, so the micro-kernels never read outside the operands; they store only the m x n
// part of an edge tile. The micro-kernel is chosen from cnnkern::simd_level() at call time.
// Every index is int64_t; C is row-major with leading dimension ldc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace cnnkern {

// A strided view of a matrix: element (i, j) at p[i*rs + j*cs]. Row-major is {p, ld, 1}; a transposed
// row-major matrix is {p, 1, ld}. This is how the callers express A^T and B^T without copies.
struct MatView {
  const float* p;
  int64_t rs, cs;
};

// The micro-kernel of one SIMD path: c[0:m, 0:n] (=|+=) sum_k a[k*mr + i] * b[k*ldb + j] for a packed A
// sliver a (kc x mr) and a B sliver b (kc rows of nr readable floats, ldb apart: ldb = nr when packed),
// with m <= mr, n <= nr.
using UKernelFn = void (*)(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc,
                           int64_t m, int64_t n, bool accumulate);
struct UKernel {
  int64_t mr, nr;
  UKernelFn fn;
};
const UKernel& ukernel();  // the micro-kernel for the current simd_level()

// A matrix packed for the micro-kernel `uk`: ceil(M/mr) slivers, sliver s holding rows [s*mr, s*mr+mr) for
// all K columns, element (i, k) at data[(i/mr)*K*mr + k*mr + i%mr]; rows past M are zero.
struct PackedA {
  const float* data;
  int64_t M, K;
  UKernel uk;
};
int64_t packed_a_floats(int64_t M, int64_t K, const UKernel& uk);
// Packs A (M,K) into dst (packed_a_floats(M, K, uk) floats) and returns the view of it.
PackedA pack_a(int64_t M, int64_t K, MatView A, const UKernel& uk, float* dst);

// C[:, j0:j1] (=|+=) A · B[:, j0:j1] on the calling thread. Uses a thread-local, grow-only buffer for the
// packed B blocks.
void sgemm_packed_serial(const PackedA& A, int64_t j0, int64_t j1, MatView B, float* C, int64_t ldc,
                         bool accumulate);
// The same for rows [i0, i1) of C only (i0 a multiple of A.uk.mr).
void sgemm_packed_rows_serial(const PackedA& A, int64_t i0, int64_t i1, int64_t j0, int64_t j1, MatView B,
                              float* C, int64_t ldc, bool accumulate);
// C[:, 0:N] (=|+=) A · B for a row-major B (K, ldb) read in place, without packing: every row must be
// readable up to column round_up(N, nr) (the padding columns feed only outputs that are not stored), and
// rows 64-byte aligned with ldb a multiple of nr are what make this fast (one cache line per k and sliver).
// Columns [j0, j1) only, j0 a multiple of nr.
void sgemm_padded_b_serial(const PackedA& A, const float* B, int64_t ldb, int64_t j0, int64_t j1, float* C,
                           int64_t ldc, bool accumulate);
// C (=|+=) A · B for the whole (M, N), the tiles split over the thread pool (columns when N is wide,
// rows otherwise), so a single GEMM uses every thread.
void sgemm_packed(const PackedA& A, int64_t N, MatView B, float* C, int64_t ldc, bool accumulate);

// C (M,N) = A (M,K) · B^T for a row-major B (N,K), both read in place along k (no packing): the dense
// forward, y = x · w^T. On the AVX2 / AVX-512 paths it runs gemm_nt_avx2.cpp's dot-product tiles in fixed
// k blocks (a result depends on neither the tiling nor the thread count); the scalar path runs sgemm.
void sgemm_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
              float* C, int64_t ldc);

// Unpacked conveniences: pack A into a thread-local buffer, then as above.
void sgemm_serial(int64_t M, int64_t N, int64_t K, MatView A, MatView B, float* C, int64_t ldc,
                  bool accumulate);
void sgemm(int64_t M, int64_t N, int64_t K, MatView A, MatView B, float* C, int64_t ldc, bool accumulate);

// Grow-only scratch: returns a 64-byte aligned pointer to at least n floats, reallocating only when n grows.
inline float* grow(std::vector<float>& buf, int64_t n) {
  if (static_cast<int64_t>(buf.size()) < n + 16) buf.resize(static_cast<size_t>(n + 16));
  const uintptr_t p = reinterpret_cast<uintptr_t>(buf.data());
  return reinterpret_cast<float*>((p + 63) & ~uintptr_t(63));
}

// The per-ISA micro-kernels (gemm_avx2.cpp, gemm_avx512.cpp), plain extern functions.
#ifdef CNNKERN_X86
constexpr int64_t kAvx2MR = 6, kAvx2NR = 16;
void sgemm_ukernel_avx2_6x16(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc,
                             int64_t m, int64_t n, bool accumulate);
constexpr int64_t kAvx512MR = 14, kAvx512NR = 32;
void sgemm_ukernel_avx512_14x32(int64_t kc, const float* a, const float* b, int64_t ldb, float* c,
                                int64_t ldc, int64_t m, int64_t n, bool accumulate);
// dst[k*ld + i] = src[i*rs + k] for k < kc, i < width, rows >= `rows` as zeros (gemm_pack_avx2.cpp): the
// transposing packs of A (row-major) and B (transposed), 8x8 blocks at a time.
void pack_transposed_avx2(const float* src, int64_t rs, int64_t rows, int64_t kc, int64_t width, float* dst,
                          int64_t ld);
// C[i*ldc + j] (=|+=) sum_{k < kc} a[i*lda + k] * b[j*ldb + k] for i < m, j < n (gemm_nt_avx2.cpp).
void sgemm_nt_block_avx2(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t m, int64_t n,
                         int64_t kc, float* c, int64_t ldc, bool accumulate);
// y[o] = sum_k w[o*ld + k] * x[k] for o in [o0, o1) (gemv_avx2.cpp): dense forward at batch 1.
void sgemv_rows_avx2(const float* w, int64_t ld, const float* x, int64_t in, int64_t o0, int64_t o1,
                     float* y);
#endif

}  // namespace cnnkern
