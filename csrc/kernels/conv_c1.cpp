// conv2d for few input channels (1 to 4), 3x3, stride 1, no dilation, any zero padding (the first layer of
// an image CNN) on the SIMD path: direct kernels (isa/avx2/conv_c1_avx2.cpp: each output summed in a register
// over every channel's taps) instead of a GEMM whose reduction is only 9 C long; conv.cpp dispatches here
// when conv_c1_applies. A padded image is first copied into zero-bordered planes (the conv of those planes
// without padding is the padded conv). The dw kernel takes one channel at a time. Threads: images split over
// the threads forward; dw and db summed over chunks of images that depend on the problem alone
// (reduction_chunks, docs/threads.md).
#include <algorithm>
#include <cstring>
#include <functional>
#include <vector>

#include "kernels/activation.h"
#include "kernels/conv.h"
#include "kernels/gemm.h"
#include "runtime/common.h"

namespace cnnkern {

constexpr int64_t kC1MaxChannels = 4;

bool conv_c1_applies(const ConvGeom& g) {
#ifdef CNNKERN_X86
  return simd_level() != Simd::scalar && g.C >= 1 && g.C <= kC1MaxChannels && g.G == 1 && g.R == 3 &&
         g.S == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.P >= 1 && g.Q >= 1;
#else
  (void)g;
  return false;
#endif
}

const float* conv_c1_planes(const float* xn, const ConvGeom& g, std::vector<float>& buf) {
  const int64_t Hp = g.P + 2, Wp = g.Q + 2;
  if (g.pt == 0 && g.pl == 0 && Hp == g.H && Wp == g.W) return xn;
  float* out = grow(buf, g.C * Hp * Wp);
  std::fill(out, out + g.C * Hp * Wp, 0.0f);
  // rows / columns of the padded plane that hold image values (the rest stays zero)
  const int64_t y0 = std::min(g.pt, Hp), y1 = std::min(Hp, g.pt + g.H);
  const int64_t x0 = std::min(g.pl, Wp), x1 = std::min(Wp, g.pl + g.W);
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t y = y0; y < y1; ++y)
      std::memcpy(out + (c * Hp + y) * Wp + x0, xn + (c * g.H + y - g.pt) * g.W + (x0 - g.pl),
                  sizeof(float) * (x1 - x0));
  return out;
}

#ifdef CNNKERN_X86
namespace {

// Filters [k, k + kc) of one image on its planes (conv_c1_planes): y (kc, P, Q), the bias, every channel's
// terms and relu / leaky_relu in the register (other activations after).
void filters_of_image(const float* planes, const float* w, const float* b, float* y, int64_t k, int64_t kc,
                      const ConvGeom& g, Act act, float alpha) {
  const int code = act == Act::relu ? 1 : act == Act::leaky_relu ? 2 : 0;
  avx2::conv_c1_3x3_forward(planes, g.P + 2, g.Q + 2, g.C, w + k * g.C * 9, b ? b + k : nullptr, y, kc, code,
                            alpha);
  if (code == 0) activation_inplace(act, y, kc * g.PQ(), alpha);
}

}  // namespace

void conv_c1_image(const float* xn, const float* w, const float* b, float* yn, const ConvGeom& g, Act act,
                   float alpha) {
  thread_local std::vector<float> pbuf;
  filters_of_image(conv_c1_planes(xn, g, pbuf), w, b, yn, 0, g.K, g, act, alpha);
}

// Split over (image, block of 4 filters), the blocks the one-channel kernel forms itself, so that one image
// (batch-1 latency) also uses every thread and every value is computed as in one call for all K filters.
void conv_c1_forward(const float* x, const float* w, const float* b, float* y, const ConvGeom& g, Act act,
                     float alpha) {
  const int64_t PQ = g.PQ(), KPQ = g.K * PQ, blocks = (g.K + 3) / 4, CHW = g.C * g.H * g.W;
  parallel_for(g.N * blocks, [&](int64_t i0, int64_t i1) {
    thread_local std::vector<float> pbuf;
    int64_t have = -1;  // the image whose planes pbuf holds
    const float* planes = nullptr;
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / blocks, k = i % blocks * 4, kc = std::min<int64_t>(4, g.K - k);
      if (n != have) planes = conv_c1_planes(x + n * CHW, g, pbuf), have = n;
      filters_of_image(planes, w, b, y + n * KPQ + k * PQ, k, kc, g, act, alpha);
    }
  });
}

// dw (and db when given) over the batch: a double partial per chunk of images (reduction_chunks), the
// partials added in chunk order.
void conv_c1_dw(const float* dy, const float* x, float* dw, float* db, const ConvGeom& g) {
  conv_c1_dw_images(x, dw, db, g, [&](int64_t n) { return dy + n * g.K * g.PQ(); });
}
#endif

#ifdef CNNKERN_X86
void conv_c1_dw_images(const float* x, float* dw, float* db, const ConvGeom& g,
                       const std::function<const float*(int64_t)>& dz_of) {
  const int64_t KRS = g.K * g.C * 9, KD = KRS + (db ? g.K : 0), chunks = reduction_chunks(g.N, g.PQ(), KD);
  const int64_t Hp = g.P + 2, Wp = g.Q + 2, CHW = g.C * g.H * g.W;
  thread_local std::vector<double> partbuf;
  partbuf.assign(static_cast<size_t>(chunks * KD), 0.0);
  double* parts = partbuf.data();  // the caller's buffer (a thread_local name would be each worker's own)
  parallel_chunks(chunks, [&](int64_t c) {
    thread_local std::vector<float> imgbuf, pbuf;
    float* img = grow(imgbuf, g.K * 9 + g.K);  // one channel's dw (K, 9), then db (K,)
    double* part = parts + c * KD;
    for (int64_t n = g.N * c / chunks; n < g.N * (c + 1) / chunks; ++n) {
      const float* planes = conv_c1_planes(x + n * CHW, g, pbuf);
      const float* dz = dz_of(n);
      for (int64_t ch = 0; ch < g.C; ++ch) {
        const bool with_db = db && ch == 0;
        avx2::conv_c1_3x3_dw(planes + ch * Hp * Wp, Hp, Wp, dz, g.K, img, with_db ? img + g.K * 9 : nullptr);
        for (int64_t k = 0; k < g.K; ++k)
          for (int64_t t = 0; t < 9; ++t) part[(k * g.C + ch) * 9 + t] += img[k * 9 + t];
        if (with_db)
          for (int64_t k = 0; k < g.K; ++k) part[KRS + k] += img[g.K * 9 + k];
      }
    }
  });
  for (int64_t i = 0; i < KD; ++i) {
    double s = 0.0;
    for (int64_t c = 0; c < chunks; ++c) s += parts[c * KD + i];
    (i < KRS ? dw[i] : db[i - KRS]) = static_cast<float>(s);
  }
}
#endif

}  // namespace cnnkern
