// Packed SGEMM driver: C (M,N) (=|+=) A (M,K) · B (K,N), portable packing and the scalar micro-kernel.
//
// Loop nest (BLIS): for each NC-wide column block, for each KC-deep slice of K, pack B's (KC x NC) block
// into NR-wide slivers (zero-padded past N); then for each MC-tall row block, for each B sliver (it stays in
// L1), for each A sliver of the block (the block stays in L2), one MR x NR micro-kernel call. A is packed
// once over the full K (see PackedA), so the KC slice of an A sliver is the contiguous run at k*MR.
#include "kernels/gemm.h"

#include <algorithm>
#include <cstring>

#include "runtime/common.h"

namespace cnnkern {
namespace {

// Portable micro-kernel, MR x NR = 4 x 8: the 32 accumulators live in a local array the compiler keeps in
// (SSE) registers; each k step is an outer product of 4 A values with 8 B values.
constexpr int64_t kScalarMR = 4, kScalarNR = 8;

void sgemm_ukernel_scalar_4x8(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc,
                              int64_t m, int64_t n, bool accumulate) {
  float t[kScalarMR][kScalarNR] = {};
  for (int64_t k = 0; k < kc; ++k, a += kScalarMR, b += ldb)
    for (int64_t i = 0; i < kScalarMR; ++i)
      for (int64_t j = 0; j < kScalarNR; ++j) t[i][j] += a[i] * b[j];
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = accumulate ? c[i * ldc + j] + t[i][j] : t[i][j];
}

// Cache blocking, in elements: a B sliver (KC x NR) fits L1, an A block (MC x KC) fits L2, a B block
// (KC x NC) fits L3.
constexpr int64_t kKC = 256;
int64_t block_mc(const UKernel& uk) { return uk.mr * std::max<int64_t>(1, 144 / uk.mr); }
int64_t block_nc(const UKernel& uk) { return uk.nr * 128; }

// Whether the transposing packs run 8x8 blocks in AVX2 registers (the same copies as the portable loops).
bool transpose_in_simd() {
#ifdef CNNKERN_X86
  return simd_level() != Simd::scalar;
#else
  return false;
#endif
}

// Packs rows [pc, pc+kc) x columns [jc, jc+nc) of B into ceil(nc/nr) slivers of kc x nr, sliver s at
// dst + s*kc*nr, element (k, j) at [k*nr + j]; columns past nc are zero.
void pack_b(MatView B, int64_t pc, int64_t kc, int64_t jc, int64_t nc, int64_t nr, float* dst) {
  if (B.cs == 1) {
    // Rows of B contiguous: eight rows at a time, each sliver's eight rows in turn. Sliver by sliver over all
    // kc rows read one line per row at B's row stride, which the prefetcher did not follow across pages (21%
    // of the dense backward's dx = dy·w at batch 128, w 1024 x 1568); row by row wrote each row's pieces
    // kc*nr floats apart, all in one L1 set when that is a multiple of 4 KiB (kc 128: 6% slower at 576 ->
    // 64). Eight rows give eight sequential read streams and 8*nr contiguous floats written per sliver.
    constexpr int64_t kRows = 8;
    for (int64_t k0 = 0; k0 < kc; k0 += kRows) {
      const int64_t k1 = std::min(kc, k0 + kRows);
      for (int64_t j0 = 0; j0 < nc; j0 += nr) {
        const int64_t nv = std::min(nr, nc - j0);
        float* d = dst + j0 * kc;  // sliver j0 / nr
        for (int64_t k = k0; k < k1; ++k) {
          const float* s = B.p + (pc + k) * B.rs + jc + j0;
          if (nv == nr) {  // a constant size: the copy inlined
            std::memcpy(d + k * nr, s, sizeof(float) * nr);
          } else {
            std::memcpy(d + k * nr, s, sizeof(float) * nv);
            std::memset(d + k * nr + nv, 0, sizeof(float) * (nr - nv));
          }
        }
      }
    }
    return;
  }
  for (int64_t j0 = 0; j0 < nc; j0 += nr, dst += kc * nr) {
    const int64_t nv = std::min(nr, nc - j0);
    const float* src = B.p + pc * B.rs + (jc + j0) * B.cs;
    if (B.rs == 1) {  // B^T row-major: nv column streams read along k, each packed row written whole
      if (transpose_in_simd()) {
        pack_transposed_avx2(src, B.cs, nv, kc, nr, dst, nr);
        continue;
      }
      for (int64_t k = 0; k < kc; ++k) {
        float* d = dst + k * nr;
        for (int64_t j = 0; j < nv; ++j) d[j] = src[j * B.cs + k];
        for (int64_t j = nv; j < nr; ++j) d[j] = 0.0f;
      }
    } else {
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t j = 0; j < nr; ++j) dst[k * nr + j] = j < nv ? src[k * B.rs + j * B.cs] : 0.0f;
    }
  }
}

}  // namespace

const UKernel& ukernel() {
  static const UKernel scalar{kScalarMR, kScalarNR, sgemm_ukernel_scalar_4x8};
#ifdef CNNKERN_X86
  static const UKernel avx2{kAvx2MR, kAvx2NR, sgemm_ukernel_avx2_6x16};
  static const UKernel avx512{kAvx512MR, kAvx512NR, sgemm_ukernel_avx512_14x32};
  switch (simd_level()) {
    case Simd::avx512:
      return avx512;
    case Simd::avx2:
      return avx2;
    default:
      break;
  }
#endif
  return scalar;
}

int64_t packed_a_floats(int64_t M, int64_t K, const UKernel& uk) {
  return (M + uk.mr - 1) / uk.mr * uk.mr * K;
}

namespace {

// Rows [i0, i0 + mr) of A (zero past M) as one packed sliver: column k's mr values contiguous.
void pack_a_sliver(int64_t i0, int64_t M, int64_t K, MatView A, int64_t mr, float* dst) {
  float* d = dst + (i0 / mr) * K * mr;
  const int64_t mv = std::min(mr, M - i0);
  if (A.rs == 1) {  // A^T row-major: the mr rows of one k are contiguous in memory
    for (int64_t k = 0; k < K; ++k) {
      const float* s = A.p + k * A.cs + i0;
      for (int64_t i = 0; i < mv; ++i) d[k * mr + i] = s[i];
      for (int64_t i = mv; i < mr; ++i) d[k * mr + i] = 0.0f;
    }
    return;
  }
  // row-major A: mv row streams read along k, each packed column written whole
  const float* s = A.p + i0 * A.rs;
  if (A.cs == 1 && transpose_in_simd()) return pack_transposed_avx2(s, A.rs, mv, K, mr, d, mr);
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t i = 0; i < mv; ++i) d[k * mr + i] = s[i * A.rs + k * A.cs];
    for (int64_t i = mv; i < mr; ++i) d[k * mr + i] = 0.0f;
  }
}

// From this many elements A is packed by all the threads (the dense forward at batch 128 packs x, 1.6 MB
// for 3136 inputs, before its column split: serial, it was that split's waiting time).
constexpr int64_t kPackParallelFrom = int64_t{1} << 17;

}  // namespace

PackedA pack_a(int64_t M, int64_t K, MatView A, const UKernel& uk, float* dst) {
  const int64_t mr = uk.mr, slivers = (M + mr - 1) / mr;
  // a copy, sliver by sliver: the same bits however it is split; inside another parallel_for the
  // parallel_for below runs on the calling thread
  const auto pack = [&](int64_t s0, int64_t s1) {
    for (int64_t sl = s0; sl < s1; ++sl) pack_a_sliver(sl * mr, M, K, A, mr, dst);
  };
  if (M * K >= kPackParallelFrom && slivers > 1)
    parallel_for(slivers, pack);
  else
    pack(0, slivers);
  return PackedA{dst, M, K, uk};
}

namespace {

// One KC slice: C[i0:i1, 0:nc] (=|+=) A[i0:i1, pc:pc+kc] · B-slivers, where sliver s (columns [s*nr,
// s*nr+nr)) starts at bp + s*bstride with its kc rows ldb apart (packed: bstride = kc*nr, ldb = nr; in place:
// bstride = nr, ldb = B's row stride). Rows go in MC blocks (A block in L2); within a block each B sliver
// (in L1) meets every A sliver of the block.
void macro_kernel(const PackedA& A, int64_t pc, int64_t kc, int64_t i0, int64_t i1, const float* bp,
                  int64_t bstride, int64_t ldb, int64_t nc, float* C, int64_t ldc, bool acc) {
  const UKernel& uk = A.uk;
  const int64_t mr = uk.mr, nr = uk.nr, MC = block_mc(uk);
  for (int64_t ic = i0; ic < i1; ic += MC) {
    const int64_t ie = std::min(i1, ic + MC);
    for (int64_t js = 0; js < nc; js += nr) {
      const float* bs = bp + (js / nr) * bstride;
      const int64_t n = std::min(nr, nc - js);
      for (int64_t is = ic; is < ie; is += mr) {
        const float* as = A.data + (is / mr) * A.K * mr + pc * mr;
        uk.fn(kc, as, bs, ldb, C + is * ldc + js, ldc, std::min(mr, ie - is), n, acc);
      }
    }
  }
}

// K split into equal slices of at most kKC, so no slice is a short remainder.
int64_t slice_kc(int64_t K) {
  const int64_t nk = (K + kKC - 1) / kKC;
  return (K + nk - 1) / nk;
}

void zero_or_keep(int64_t i0, int64_t i1, int64_t ncols, float* C, int64_t ldc, bool accumulate) {
  if (!accumulate)
    for (int64_t i = i0; i < i1; ++i) std::memset(C + i * ldc, 0, sizeof(float) * ncols);
}

}  // namespace

void sgemm_packed_rows_serial(const PackedA& A, int64_t i0, int64_t i1, int64_t j0, int64_t j1, MatView B,
                              float* C, int64_t ldc, bool accumulate) {
  if (i0 >= i1 || j0 >= j1) return;
  const UKernel& uk = A.uk;
  const int64_t K = A.K, nr = uk.nr;
  if (K == 0) return zero_or_keep(i0, i1, j1 - j0, C + j0, ldc, accumulate);  // empty sum
  const int64_t kcb = slice_kc(K), NC = block_nc(uk);
  thread_local std::vector<float> bbuf;
  float* bp = grow(bbuf, kcb * std::min(NC, (j1 - j0 + nr - 1) / nr * nr));
  for (int64_t jc = j0; jc < j1; jc += NC) {
    const int64_t nc = std::min(NC, j1 - jc);
    for (int64_t pc = 0; pc < K; pc += kcb) {
      const int64_t kc = std::min(kcb, K - pc);
      pack_b(B, pc, kc, jc, nc, nr, bp);
      macro_kernel(A, pc, kc, i0, i1, bp, kc * nr, nr, nc, C + jc, ldc, accumulate || pc > 0);
    }
  }
}

void sgemm_padded_b_serial(const PackedA& A, const float* B, int64_t ldb, int64_t j0, int64_t j1, float* C,
                           int64_t ldc, bool accumulate) {
  if (j0 >= j1) return;
  const int64_t K = A.K, nr = A.uk.nr;
  if (K == 0) return zero_or_keep(0, A.M, j1 - j0, C + j0, ldc, accumulate);
  const int64_t kcb = slice_kc(K);
  for (int64_t pc = 0; pc < K; pc += kcb)
    macro_kernel(A, pc, std::min(kcb, K - pc), 0, A.M, B + pc * ldb + j0, nr, ldb, j1 - j0, C + j0, ldc,
                 accumulate || pc > 0);
}

void sgemm_packed_serial(const PackedA& A, int64_t j0, int64_t j1, MatView B, float* C, int64_t ldc,
                         bool accumulate) {
  sgemm_packed_rows_serial(A, 0, A.M, j0, j1, B, C, ldc, accumulate);
}

namespace {

// Below ~1 MFLOP (~25 us on one core) waking the pool costs more than it saves (measured: dense 64->10 at
// batch 128, 0.16 MFLOP, took 90 us split over 2 threads against 19 us for PyTorch on one).
bool run_serial(int64_t M, int64_t N, int64_t K) { return num_threads() == 1 || 2 * M * N * K < 1000000; }

}  // namespace

void sgemm_packed(const PackedA& A, int64_t N, MatView B, float* C, int64_t ldc, bool accumulate) {
  const int64_t M = A.M, mr = A.uk.mr, nr = A.uk.nr;
  const int64_t nt = num_threads();
  const int64_t col_slivers = (N + nr - 1) / nr, row_slivers = (M + mr - 1) / mr;
  if (run_serial(M, N, A.K)) {
    sgemm_packed_rows_serial(A, 0, M, 0, N, B, C, ldc, accumulate);
    return;
  }
  // Split the wider side of the tile grid, so each thread packs only its share of B (column split) or
  // reads only its rows of A (row split).
  if (col_slivers >= 2 * nt || col_slivers >= row_slivers) {
    parallel_for(col_slivers, [&](int64_t s0, int64_t s1) {
      sgemm_packed_rows_serial(A, 0, M, s0 * nr, std::min(N, s1 * nr), B, C, ldc, accumulate);
    });
  } else {
    parallel_for(row_slivers, [&](int64_t s0, int64_t s1) {
      sgemm_packed_rows_serial(A, s0 * mr, std::min(M, s1 * mr), 0, N, B, C, ldc, accumulate);
    });
  }
}

// sgemm_nt's blocking: k in fixed blocks of kNtKC (the order of a result's additions: never the thread
// count's), outputs in tiles of kNtIB rows x kNtJB columns, so that a tile's k block of A and B (48 + 64 rows
// of 512 floats, 224 KiB) stays in L2. Tiles run column-block-major: a thread's consecutive tiles share
// B's rows, the larger operand (w) of a dense layer.
constexpr int64_t kNtKC = 512, kNtIB = 48, kNtJB = 64;

void sgemm_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
              float* C, int64_t ldc) {
#ifdef CNNKERN_X86
  if (simd_level() != Simd::scalar) {
    const int64_t ib = (M + kNtIB - 1) / kNtIB, jb = (N + kNtJB - 1) / kNtJB;
    const auto run = [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t i0 = (t % ib) * kNtIB, j0 = (t / ib) * kNtJB;
        const int64_t m = std::min(kNtIB, M - i0), n = std::min(kNtJB, N - j0);
        float* c = C + i0 * ldc + j0;
        if (K == 0) zero_or_keep(0, m, n, c, ldc, false);
        for (int64_t p = 0; p < K; p += kNtKC)
          sgemm_nt_block_avx2(A + i0 * lda + p, lda, B + j0 * ldb + p, ldb, m, n, std::min(kNtKC, K - p), c,
                              ldc, p > 0);
      }
    };
    if (run_serial(M, N, K))
      run(0, ib * jb);
    else
      parallel_for(ib * jb, run);
    return;
  }
#endif
  sgemm(M, N, K, MatView{A, lda, 1}, MatView{B, 1, ldb}, C, ldc, false);
}

void sgemm_serial(int64_t M, int64_t N, int64_t K, MatView A, MatView B, float* C, int64_t ldc,
                  bool accumulate) {
  const UKernel& uk = ukernel();
  thread_local std::vector<float> abuf;
  const PackedA pa = pack_a(M, K, A, uk, grow(abuf, packed_a_floats(M, K, uk)));
  sgemm_packed_rows_serial(pa, 0, M, 0, N, B, C, ldc, accumulate);
}

void sgemm(int64_t M, int64_t N, int64_t K, MatView A, MatView B, float* C, int64_t ldc, bool accumulate) {
  const UKernel& uk = ukernel();
  thread_local std::vector<float> abuf;
  const PackedA pa = pack_a(M, K, A, uk, grow(abuf, packed_a_floats(M, K, uk)));
  // A row-major B whose rows hold whole slivers is read in place (sgemm_padded_b_serial): packing it costs a
  // pass over B for every call, as much as the arithmetic when M is small (the dense dx = dy · w at batch 32:
  // w (1024, 1568) and (1024, 2304): 4.1 -> 2.6 and 5.9 -> 4.1 ms, 1 thread). Not when B's rows are a
  // multiple of 4 KiB apart: a sliver's rows then all fall in one L1 set (w (512, 4096) measured slower in
  // place). Same slices of K, same bits.
  if (B.cs == 1 && N % uk.nr == 0 && M <= 4 * uk.mr && B.rs % 1024 != 0) {
    const int64_t slivers = N / uk.nr;
    const auto run = [&](int64_t s0, int64_t s1) {
      sgemm_padded_b_serial(pa, B.p, B.rs, s0 * uk.nr, s1 * uk.nr, C, ldc, accumulate);
    };
    if (run_serial(M, N, K))
      run(0, slivers);
    else
      parallel_for(slivers, run);
    return;
  }
  sgemm_packed(pa, N, B, C, ldc, accumulate);
}

}  // namespace cnnkern
