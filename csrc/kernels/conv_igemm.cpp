// Drivers of the indirect GEMM convolutions (conv_igemm.h) around avx2::igemm_6x16, which computes a 6 x 16
// tile t[i][v] = sum_j a[aoff_j + v] * b_i[boff[j]] with six row base pointers b_i and one offset table.
// No padding or dilation, one group: x[c, p*sh+r, q*sw+s] = x + c*HW + r*W + s + (p*sh*W + q*sw); the
// forward and dw take any stride (conv_igemm_strided_*), dx stride 1 only.
//
//   forward: rows = 6 output pixels (of any images), columns = 16 filters, j = (c, r, s):
//     y[n,k,p,q] = sum_j wp[j][k] * x_n[(p*W + q) + (c*HW + r*W + s)];  wp = w^T packed in 16-filter slivers.
//     No im2col: the tile's pixels are read where they are (the image is in L1/L2 across the slivers).
//   dx: rows = 6 input pixels, columns = 16 input channels, j = (r, s, k) over the taps that land inside dy:
//     dx[n,c,h,w] = sum_{r,s,k} w[k,c,r,s] * dy[n,k,h-r,w-s],  0 <= h-r < P, 0 <= w-s < Q.
//     Pixels are grouped by their valid tap ranges (r in [r_lo, r_hi], s in [s_lo, s_hi]: interior, edges,
//     corners), each class with its own table, so no zero tap is multiplied (a full convolution over a
//     zero-padded dy would do 39% more work for conv2 of the classic CNN, 178% for conv3). Every dx value
//     is written once: no col2im, no zeroing pass.
//   dw: rows = 6 taps (c, r, s), columns = 16 filters, j = the pixels (n, p, q) of a chunk of images:
//     dw[k,c,r,s] = sum_{n,p,q} dyT[(n,p,q)][k] * x_n[(c*HW + r*W + s) + (p*W + q)],  dyT = dy transposed per
//     chunk (pixels x filters, 16-aligned rows), so the whole reduction over a chunk stays in registers.
// Threads: forward splits the tiles, or the 16-filter slivers where the weights outweigh the images; dx
// splits its items (image block, channel sliver) into one contiguous range per thread, and a thread done with
// its own range takes items from the back of the fullest other one (each item is computed alone, in a fixed
// order, so results do not depend on who runs it); dw sums chunks of images that depend on the problem alone
// (reduction_chunks), a partial each, added in chunk order, so no bit depends on the thread count (dw_impl).
#include "kernels/conv_igemm.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include "runtime/common.h"
#include "kernels/gemm.h"

namespace cnnkern {

#ifdef CNNKERN_X86
namespace avx2 {  // conv_igemm_avx2.cpp
void igemm_6x16(int64_t kc, const float* a, const int64_t* aoff, int64_t lda, const float* const* b,
                const int64_t* boff, float* t, bool accumulate);
void transpose_bias_act(const float* src, int64_t lds, int64_t rows, int64_t cols, const float* b, int act,
                        float alpha, float* dst, int64_t ldd);
}  // namespace avx2
#endif

bool conv_igemm_applies(const ConvGeom& g) {
#ifdef CNNKERN_X86
  return simd_level() != Simd::scalar && g.G == 1 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 &&
         g.pt == 0 && g.pl == 0 && g.P <= g.H - g.R + 1 && g.Q <= g.W - g.S + 1 && g.P > 0 && g.Q > 0 &&
         !g.pointwise();  // (P, Q below the conv's: cropped to what a pool reads, conv_pool.cpp)
#else
  (void)g;
  return false;
#endif
}

#ifdef CNNKERN_X86
namespace {

constexpr int64_t MR = 6, NR = 16;

// Asks for floats [p, p+n) to be brought into the cache: the tiles read x plane by plane, a pattern the
// hardware prefetcher does not follow, so the next image is fetched while the current one is computed
// (measured in the training step at batch 128, where x comes from the pool: ~20% slower without).
inline void prefetch_floats(const float* p, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) __builtin_prefetch(p + i);
}

// The pixel classes of a dx geometry and their tap tables (they depend on H, W, R, S, K only).
struct DxClass {
  std::vector<int64_t> aoff, boff;  // the taps (r, s, k): packed-A row offset, dyT offset from the base
  std::vector<int64_t> dyb, dxb;    // per pixel of one image: dyT row (at tap r_lo, s_lo), dx offset
};

void dx_classes(const ConvGeom& g, std::vector<DxClass>& cls) {
  const int64_t H = g.H, W = g.W, P = g.P, Q = g.Q, R = g.R, S = g.S, K = g.K;
  // Tap ranges of each input row h and column w; pixels with the same pair of ranges form a class.
  auto ranges = [](int64_t L, int64_t out, int64_t taps, std::vector<std::pair<int64_t, int64_t>>& kinds,
                   std::vector<int64_t>& kind_of) {
    std::map<std::pair<int64_t, int64_t>, int64_t> seen;
    kind_of.resize(L);
    for (int64_t h = 0; h < L; ++h) {
      const std::pair<int64_t, int64_t> rr{std::max<int64_t>(0, h - out + 1), std::min<int64_t>(taps - 1, h)};
      auto it = seen.find(rr);
      if (it == seen.end()) {
        it = seen.emplace(rr, static_cast<int64_t>(kinds.size())).first;
        kinds.push_back(rr);
      }
      kind_of[h] = it->second;
    }
  };
  std::vector<std::pair<int64_t, int64_t>> rk, sk;
  std::vector<int64_t> rk_of, sk_of;
  ranges(H, P, R, rk, rk_of);
  ranges(W, Q, S, sk, sk_of);
  cls.assign(rk.size() * sk.size(), DxClass{});
  for (int64_t h = 0; h < H; ++h)
    for (int64_t x = 0; x < W; ++x) {
      DxClass& c = cls[rk_of[h] * sk.size() + sk_of[x]];
      c.dyb.push_back((h - rk[rk_of[h]].first) * Q + (x - sk[sk_of[x]].first));
      c.dxb.push_back(h * W + x);
    }
  for (size_t a = 0; a < rk.size(); ++a)
    for (size_t b = 0; b < sk.size(); ++b) {
      DxClass& c = cls[a * sk.size() + b];
      const auto [r0, r1] = rk[a];
      const auto [s0, s1] = sk[b];
      for (int64_t r = r0; r <= r1; ++r)
        for (int64_t s = s0; s <= s1; ++s)
          for (int64_t k = 0; k < K; ++k) {
            c.aoff.push_back(((r * S + s) * K + k) * NR);
            c.boff.push_back(k - ((r - r0) * Q + (s - s0)) * K);
          }
    }
}

// Takes one item of a range packed as (lo << 32) | hi: the first (front) or the last; -1 when it is empty.
int64_t take_item(std::atomic<uint64_t>& range, bool front) {
  uint64_t v = range.load(std::memory_order_relaxed);
  for (;;) {
    const uint64_t lo = v >> 32, hi = v & 0xffffffffu;
    if (lo >= hi) return -1;
    const uint64_t next = front ? ((lo + 1) << 32 | hi) : (lo << 32 | (hi - 1));
    if (range.compare_exchange_weak(v, next, std::memory_order_relaxed))
      return static_cast<int64_t>(front ? lo : hi - 1);
  }
}

// Image n of dx at dx + n*xs, of dy at dy + n*dys (conv_igemm_backward's strides).
void dx_impl(const float* dy, const float* w, float* dx, const ConvGeom& g, int64_t xs, int64_t dys) {
  const int64_t H = g.H, W = g.W, P = g.P, Q = g.Q, R = g.R, S = g.S, K = g.K, C = g.C;
  const int64_t HW = H * W, PQ = P * Q, KPQ = K * PQ, RS = R * S, RSK = RS * K, CRS = C * RS;
  const int64_t cs_count = (C + NR - 1) / NR;
  // Row (r, s, k) of sliver cs, column c: w[k, c, r, s] (loops in that order: no divisions).
  thread_local std::vector<float> abuf;
  float* A = grow(abuf, cs_count * RSK * NR);
  for (int64_t cs = 0; cs < cs_count; ++cs) {
    const int64_t cn = std::min(NR, C - cs * NR);
    for (int64_t rs = 0; rs < RS; ++rs)
      for (int64_t k = 0; k < K; ++k) {
        float* d = A + ((cs * RS + rs) * K + k) * NR;
        const float* src = w + k * CRS + cs * NR * RS + rs;
        for (int64_t v = 0; v < cn; ++v) d[v] = src[v * RS];
        for (int64_t v = cn; v < NR; ++v) d[v] = 0.0f;
      }
  }
  // The classes, kept for the next call of the same geometry (every training step repeats it).
  thread_local std::vector<DxClass> cls;
  thread_local int64_t key[7] = {-1};
  const int64_t k_now[7] = {H, W, P, Q, R, S, K};
  if (!std::equal(k_now, k_now + 7, key)) {
    dx_classes(g, cls);
    std::copy(k_now, k_now + 7, key);
  }
  const std::vector<DxClass>& classes = cls;  // a local name, so the worker threads see the caller's
  // Work items (block of nb images, 16-channel sliver cs): per class, the tiles of the block's pixels in
  // that class, staged pixel-major in st (nb*H*W x 16, L1/L2), then written out plane by plane, so dx is
  // stored in whole rows rather than as 6-float pieces of 16 planes per tile.
  const int64_t nb = std::max<int64_t>(1, std::min(g.N, (256 + HW - 1) / HW));
  const int64_t blocks = (g.N + nb - 1) / nb, items = blocks * cs_count;
  // Each thread owns a contiguous range of items and takes them from its front; a thread done with its own
  // range takes items from the back of the range with the most left. A thread that starts late (woken late,
  // or preempted by another process on a 2-core machine) thus no longer leaves the others waiting at the
  // end. Every item computes its dx values alone, in a fixed order: results do not depend on who runs it.
  const int64_t nt = std::min<int64_t>(num_threads(), items);
  std::vector<std::atomic<uint64_t>> ranges(static_cast<size_t>(nt));
  for (int64_t t = 0; t < nt; ++t)
    ranges[t].store(static_cast<uint64_t>(items * t / nt) << 32 |
                    static_cast<uint64_t>(items * (t + 1) / nt));
  parallel_for(nt, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> stbuf, dytbuf;
    float* st = grow(stbuf, nb * HW * NR);
    float* dyt = grow(dytbuf, nb * KPQ);
    alignas(32) float t[MR * NR];
    const float* bp[MR];
    int64_t so[MR];
    for (int64_t me = t0; me < t1; ++me) {
      for (int64_t cur = -1;;) {
        int64_t it = take_item(ranges[me], true);
        if (it < 0) {  // the back of the fullest other range
          int64_t best = -1;
          uint64_t most = 0;
          for (int64_t o = 0; o < nt; ++o) {
            const uint64_t v = ranges[o].load(std::memory_order_relaxed), lo = v >> 32, hi = v & 0xffffffffu;
            if (hi > lo && hi - lo > most) most = hi - lo, best = o;
          }
          if (best < 0) break;
          it = take_item(ranges[best], false);
          if (it < 0) continue;
        }
        const int64_t blk = it / cs_count, cs = it % cs_count, n0 = blk * nb, cnt_n = std::min(nb, g.N - n0);
        const float* As = A + cs * RSK * NR;
        if (blk != cur) {  // dy of the block transposed to (pixels, K): a tile's six rows then advance by one
          cur = blk;       // float per k instead of a P*Q stride, six lines per 16 steps instead of per step
          for (int64_t n = 0; n < cnt_n; ++n)
            pack_transposed_avx2(dy + (n0 + n) * dys, PQ, K, PQ, K, dyt + n * KPQ, K);
        }
        for (const DxClass& c : classes) {
          const int64_t cnt = static_cast<int64_t>(c.dyb.size()), total = cnt_n * cnt;
          for (int64_t e0 = 0, n = 0, px = 0; e0 < total; e0 += MR) {  // (n, px): the block pixel e0
            const int64_t m = std::min(MR, total - e0);
            for (int64_t i = 0; i < MR; ++i) {
              bp[i] = dyt + n * KPQ + c.dyb[px] * K;
              so[i] = (n * HW + c.dxb[px]) * NR;
              if (i < m - 1 && ++px == cnt) px = 0, ++n;
            }
            if (++px == cnt) px = 0, ++n;
            avx2::igemm_6x16(static_cast<int64_t>(c.aoff.size()), As, c.aoff.data(), 0, bp, c.boff.data(), t,
                             false);
            for (int64_t i = 0; i < m; ++i) std::memcpy(st + so[i], t + i * NR, sizeof(float) * NR);
          }
        }
        const int64_t cn = std::min(NR, C - cs * NR);
        for (int64_t n = 0; n < cnt_n; ++n)  // st (pixels x 16) into the sliver's cn planes of dx
          pack_transposed_avx2(st + n * HW * NR, NR, HW, cn, HW, dx + (n0 + n) * xs + cs * NR * HW, HW);
      }
    }
  });
}

// dw rows [rt0*6, rt1*6) of the taps (c, r, s), summed over images [n0, n1), into dst (K, C*R*S); dst is
// overwritten (zeroed when the range is empty). With dbs (K doubles), also db's sums over the same images,
// taken from dy's transposed rows (one pass over dy less).
void dw_block(const float* dy, const float* x, float* dst, double* dbs, const ConvGeom& g, int64_t xs,
              int64_t dys, int64_t n0, int64_t n1, int64_t rt0, int64_t rt1) {
  const int64_t W = g.W, P = g.P, Q = g.Q, R = g.R, S = g.S, K = g.K;
  const int64_t HW = g.H * W, PQ = P * Q, CRS = g.C * R * S;
  const int64_t ks = (K + NR - 1) / NR, Kp = ks * NR;
  // Images per chunk: ~256 pixels, so a 16-filter sliver of dyT (16 KiB) stays in L1 across the tap tiles.
  const int64_t chunk = std::max<int64_t>(1, 256 / PQ);
  thread_local std::vector<float> dytbuf, accbuf;
  thread_local std::vector<int64_t> offbuf;
  if (dbs) std::fill(dbs, dbs + K, 0.0);
  if (n0 >= n1) {
    for (int64_t k = 0; k < K; ++k)
      for (int64_t e = rt0 * MR; e < std::min(CRS, rt1 * MR); ++e) dst[k * CRS + e] = 0.0f;
    return;
  }
  // The tiles' sums over the chunks stay in acc (tile after tile, 6 x 16 each), each chunk's sum added by the
  // micro-kernel, and go to dst once at the end: the same additions in the same order as adding each chunk's
  // tile into dst, without a strided read-modify-write of 96 values per tile and chunk (~12% of dw_block).
  float* acc = grow(accbuf, (rt1 - rt0) * ks * MR * NR);
  // x offsets of the pixels (n, p, q) from the chunk's first image: the same table for every chunk
  offbuf.resize(std::min(chunk, n1 - n0) * PQ);
  int64_t* boff = offbuf.data();
  for (int64_t i = 0, j = 0; i < std::min(chunk, n1 - n0); ++i)
    for (int64_t p = 0; p < P; ++p)
      for (int64_t q = 0; q < Q; ++q) boff[j++] = i * xs + p * g.sh * W + q * g.sw;
  const float* bp[MR];
  for (int64_t c0 = n0; c0 < n1; c0 += chunk) {
    const int64_t c1 = std::min(n1, c0 + chunk), npix = (c1 - c0) * PQ;
    for (int64_t n = c1; n < std::min(n1, c1 + chunk); ++n)  // the next chunk's images: the channels read
      prefetch_floats(x + n * xs, g.C * HW);                 // (a group's, in a grouped conv)
    float* dyt = grow(dytbuf, npix * Kp);
    for (int64_t i = 0; i < c1 - c0; ++i) {
      float* d = dyt + i * PQ * Kp;
      pack_transposed_avx2(dy + (c0 + i) * dys, PQ, K, PQ, Kp, d, Kp);  // filters K .. Kp zero
      if (dbs)  // in double, pixel after pixel: a fixed order
        for (int64_t pq = 0; pq < PQ; ++pq)
          for (int64_t k = 0; k < K; ++k) dbs[k] += d[pq * Kp + k];
    }
    const float* xc = x + c0 * xs;
    for (int64_t rt = rt0; rt < rt1; ++rt) {
      const int64_t e0 = rt * MR, m = std::min(MR, CRS - e0);
      for (int64_t i = 0; i < MR; ++i) {
        const int64_t e = e0 + std::min(i, m - 1), c = e / (R * S), r = e / S % R, s = e % S;
        bp[i] = xc + c * HW + r * W + s;
      }
      for (int64_t fs = 0; fs < ks; ++fs)
        avx2::igemm_6x16(npix, dyt + fs * NR, nullptr, Kp, bp, boff, acc + ((rt - rt0) * ks + fs) * MR * NR,
                         c0 != n0);
    }
  }
  for (int64_t rt = rt0; rt < rt1; ++rt) {
    const int64_t e0 = rt * MR, m = std::min(MR, CRS - e0);
    for (int64_t fs = 0; fs < ks; ++fs) {
      const float* t = acc + ((rt - rt0) * ks + fs) * MR * NR;
      for (int64_t f = 0; f < std::min(NR, K - fs * NR); ++f)
        for (int64_t i = 0; i < m; ++i) dst[(fs * NR + f) * CRS + e0 + i] = t[i * NR + f];
    }
  }
}

// dw (and db) summed per chunk of images (reduction_chunks: from the problem alone), each chunk into its own
// partial, the partials added in chunk order. At least as many chunks as threads: the threads take chunks;
// fewer: chunk after chunk, its tap tiles split over the threads (tiles are separate outputs: same bits).
void dw_impl(const float* dy, const float* x, float* dw, float* db, const ConvGeom& g, int64_t xs,
             int64_t dys) {
  const int64_t CRS = g.C * g.R * g.S, size = g.K * CRS, row_tiles = (CRS + MR - 1) / MR;
  const int64_t chunks = reduction_chunks(g.N, g.PQ(), size), nt = num_threads();
  thread_local std::vector<double> dbbuf;
  dbbuf.assign(db ? static_cast<size_t>(chunks * g.K) : 0, 0.0);
  double* dbs = db ? dbbuf.data() : nullptr;  // per-chunk db partials (the caller's buffer)
  thread_local std::vector<float> partbuf;
  float* parts = chunks > 1 ? grow(partbuf, (chunks - 1) * size) : nullptr;
  auto part = [&](int64_t c) { return c == 0 ? dw : parts + (c - 1) * size; };
  auto first = [&](int64_t c) { return g.N * c / chunks; };
  if (chunks >= nt) {
    parallel_chunks(chunks, [&](int64_t c) {
      dw_block(dy, x, part(c), dbs ? dbs + c * g.K : nullptr, g, xs, dys, first(c), first(c + 1), 0,
               row_tiles);
    });
  } else {
    for (int64_t c = 0; c < chunks; ++c)
      parallel_for(row_tiles, [&](int64_t r0, int64_t r1) {
        dw_block(dy, x, part(c), dbs && r0 == 0 ? dbs + c * g.K : nullptr, g, xs, dys, first(c), first(c + 1),
                 r0, r1);
      });
  }
  if (parts)
    parallel_for(size, [&](int64_t i0, int64_t i1) {
      for (int64_t c = 1; c < chunks; ++c) {
        const float* p = parts + (c - 1) * size;
        for (int64_t i = i0; i < i1; ++i) dw[i] += p[i];
      }
    });
  if (db)
    for (int64_t k = 0; k < g.K; ++k) {
      double sum = 0.0;
      for (int64_t c = 0; c < chunks; ++c) sum += dbs[c * g.K + k];
      db[k] = static_cast<float>(sum);
    }
}

}  // namespace

void conv_igemm_forward(const float* x, const float* w, const float* b, float* y, const ConvGeom& g, Act act,
                        float alpha, int64_t x_image_stride, int64_t y_image_stride,
                        const ConvGeom* framed_from) {
  const int64_t W = g.W, P = g.P, Q = g.Q, K = g.K, R = g.R, S = g.S;
  const int64_t HW = g.H * W, PQ = g.PQ(), CRS = g.C * R * S;
  // images x + n*CHW (C channels read) and y + n*KPQ (K written): dense unless a group's slice of a wider
  // array
  const int64_t CHW = x_image_stride ? x_image_stride : g.C * HW,
                KPQ = y_image_stride ? y_image_stride : K * PQ;
  thread_local std::vector<int64_t> offbuf;
  offbuf.resize(CRS);
  for (int64_t c = 0, j = 0; c < g.C; ++c)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t s = 0; s < S; ++s) offbuf[j++] = c * HW + r * W + s;
  const int64_t* boff = offbuf.data();  // the caller's table (a thread_local name would be each worker's own)
  const int64_t ks = (K + NR - 1) / NR, pixels = g.N * PQ, tiles = (pixels + MR - 1) / MR;
  // the write-out applies every activation (transpose_bias_act's codes)
  const int act_code = act == Act::relu         ? 1
                       : act == Act::leaky_relu ? 2
                       : act == Act::sigmoid    ? 3
                       : act == Act::tanh       ? 4
                                                : 0;

  // Slivers [s0, s1) of w^T (CRS x 16 each, zero past K) into dst, by 8x8 register transposes: the scalar
  // gather this replaced cost twice the GEMM at batch 1 (classic conv3, 9 pixels: 13 of 27 us).
  const auto pack = [&](int64_t s0, int64_t s1, float* dst) {
    for (int64_t s = s0; s < s1; ++s)
      pack_transposed_avx2(w + s * NR * CRS, CRS, std::min(NR, K - s * NR), CRS, NR,
                           dst + (s - s0) * CRS * NR, NR);
  };
  // Pixels [e_lo, e_hi) (of any images) x slivers [s0, s1) (packed at A): the tiles' outputs are staged
  // pixel-major (their own layout) in st (rows (s1-s0)*16 wide, in L1/L2) and then written to y filter row by
  // filter row, with the bias and activation: contiguous runs of y instead of 6-float pieces of K rows per
  // tile (measured: the scattered stores cost as much as the arithmetic for conv2 of the classic CNN, y 1 MB
  // at batch 32).
  // The pixels' images are read at xb + (n - nb) * CHW: x itself (nb 0), or one image's frame (nb = n).
  const auto block = [&](int64_t e_lo, int64_t e_hi, const float* A, int64_t s0, int64_t s1, float* st,
                         const float* xb, int64_t nb) {
    const int64_t ld = (s1 - s0) * NR, k0 = s0 * NR, cols = std::min(K, s1 * NR) - k0;
    const float* bp[MR];
    // (n, p, q): the pixel e0, advanced without divisions
    for (int64_t e0 = e_lo, n = e_lo / PQ, p = e_lo % PQ / Q, q = e_lo % Q; e0 < e_hi; e0 += MR) {
      const int64_t m = std::min(MR, e_hi - e0);
      auto next = [&] {
        if (++q == Q) {
          q = 0;
          if (++p == P) p = 0, ++n;
        }
      };
      for (int64_t i = 0; i < MR; ++i) {
        bp[i] = xb + (n - nb) * CHW + p * g.sh * W + q * g.sw;
        if (i < m - 1) next();
      }
      next();
      for (int64_t fs = 0; fs < s1 - s0; ++fs) {
        float* dst = st + (e0 - e_lo) * ld + fs * NR;
        if (ld == NR && m == MR) {  // one sliver: the tile's rows are st's, written in place
          avx2::igemm_6x16(CRS, A, nullptr, NR, bp, boff, dst, false);
          continue;
        }
        alignas(32) float t[MR * NR];
        avx2::igemm_6x16(CRS, A + fs * CRS * NR, nullptr, NR, bp, boff, t, false);
        for (int64_t i = 0; i < m; ++i) std::memcpy(dst + i * ld, t + i * NR, sizeof(float) * NR);
      }
    }
    // [e_lo, e_hi) in runs within one image: y[n, k, pq0:pq1] = act(st[.., k - k0] + b[k]).
    for (int64_t e = e_lo; e < e_hi;) {
      const int64_t n = e / PQ, pq0 = e % PQ, len = std::min(e_hi - e, PQ - pq0);
      avx2::transpose_bias_act(st + (e - e_lo) * ld, ld, len, cols, b ? b + k0 : nullptr, act_code, alpha,
                               y + n * KPQ + k0 * PQ + pq0, PQ);
      e += len;
    }
  };
  constexpr int64_t kBlockTiles = 16;  // tiles per block (st: 96 pixels)
  const int64_t nt = num_threads();
  if (framed_from) {  // image by image, each padded into the thread's frame first (same tiles' sums)
    thread_local std::vector<float> abuf;
    float* A = grow(abuf, ks * CRS * NR);
    pack(0, ks, A);
    const ConvGeom& from = *framed_from;
    const int64_t src_image = from.C * from.H * from.W;
    parallel_for(g.N, [&](int64_t n0, int64_t n1) {
      thread_local std::vector<float> stbuf, framebuf;
      float* st = grow(stbuf, kBlockTiles * MR * ks * NR);
      float* frame = grow(framebuf, CHW);
      for (int64_t n = n0; n < n1; ++n) {
        pad_planes(x + n * src_image, g.C, from, g, frame);
        for (int64_t e = n * PQ; e < (n + 1) * PQ; e += kBlockTiles * MR)
          block(e, std::min((n + 1) * PQ, e + kBlockTiles * MR), A, 0, ks, st, frame, n);
      }
    });
  } else if (nt > 1 && ks > 1 && CRS * K > g.N * g.C * g.H * W) {
    // The weights outweigh the images (batch-1 latency): the threads split the slivers, each packing its
    // own, and each reads every image, rather than every thread reading all the weights packed by the
    // caller, from another core. Measured on the 2-core VM, 2 threads, interleaved (batch 1): 0.48-0.91x the
    // tile split's time with 32-128 channels at 5x5 to 16x16; 0.66-0.88x at batch 2 where the rule holds.
    parallel_for(ks, [&](int64_t s0, int64_t s1) {
      thread_local std::vector<float> abuf, stbuf;
      float* A = grow(abuf, (s1 - s0) * CRS * NR);
      pack(s0, s1, A);
      float* st = grow(stbuf, kBlockTiles * MR * (s1 - s0) * NR);
      for (int64_t e = 0; e < pixels; e += kBlockTiles * MR)
        block(e, std::min(pixels, e + kBlockTiles * MR), A, s0, s1, st, x, 0);
    });
  } else {
    // The threads split the tiles, in blocks of at most kBlockTiles, the block count a multiple of the thread
    // count (conv3 of the classic CNN at batch 32 has only 48 tiles).
    thread_local std::vector<float> abuf;
    float* A = grow(abuf, ks * CRS * NR);
    pack(0, ks, A);
    const int64_t blocks = ((tiles + kBlockTiles - 1) / kBlockTiles + nt - 1) / nt * nt;
    const int64_t bt = (tiles + blocks - 1) / blocks;  // tiles per block
    parallel_for((tiles + bt - 1) / bt, [&](int64_t blk0, int64_t blk1) {
      thread_local std::vector<float> stbuf;
      float* st = grow(stbuf, bt * MR * ks * NR);
      int64_t fetched = -1;  // the last image prefetched
      for (int64_t blk = blk0; blk < blk1; ++blk) {
        const int64_t e_lo = blk * bt * MR, e_hi = std::min(pixels, e_lo + bt * MR);
        for (int64_t n = std::max(fetched + 1, e_lo / PQ + 1); n <= std::min(g.N - 1, e_hi / PQ + 1); ++n)
          prefetch_floats(x + n * CHW, g.C * HW), fetched = n;
        block(e_lo, e_hi, A, 0, ks, st, x, 0);
      }
    });
  }
}

void conv_igemm_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                         const ConvGeom& g, int64_t x_image_stride, int64_t dy_image_stride) {
  const int64_t xs = x_image_stride ? x_image_stride : g.C * g.H * g.W;
  const int64_t dys = dy_image_stride ? dy_image_stride : g.K * g.PQ();
  if (dw) dw_impl(dy, x, dw, db, g, xs, dys);
  if (dx) dx_impl(dy, w, dx, g, xs, dys);
}

#else

void conv_igemm_forward(const float*, const float*, const float*, float*, const ConvGeom&, Act, float,
                        int64_t, int64_t, const ConvGeom*) {}
void conv_igemm_backward(const float*, const float*, const float*, float*, float*, float*, const ConvGeom&,
                         int64_t, int64_t) {}

#endif

}  // namespace cnnkern
