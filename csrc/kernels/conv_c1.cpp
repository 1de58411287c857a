// conv2d for one input channel, 3x3, stride 1, no padding or dilation (the first layer of an image CNN) on
// the SIMD path: direct kernels (isa/avx2/conv_c1_avx2.cpp) instead of a GEMM whose reduction is only 9
// long; conv.cpp dispatches here when conv_c1_applies. Threads: images split over the threads forward; dw
// and db summed over chunks of images that depend on the problem alone (reduction_chunks, docs/threads.md).
#include <algorithm>
#include <functional>
#include <vector>

#include "kernels/activation.h"
#include "kernels/conv.h"
#include "kernels/gemm.h"
#include "runtime/common.h"

namespace cnnkern {

// The first layer of an image CNN (one input channel, 3x3, stride 1, no padding or dilation) on the SIMD
// path: direct kernels (conv_c1_avx2.cpp) instead of a GEMM whose reduction is only 9 long.
bool conv_c1_applies(const ConvGeom& g) {
#ifdef CNNKERN_X86
  return simd_level() != Simd::scalar && g.C == 1 && g.G == 1 && g.R == 3 && g.S == 3 && g.sh == 1 &&
         g.sw == 1 && g.dh == 1 && g.dw == 1 && g.pt == 0 && g.pl == 0 && g.P == g.H - 2 && g.Q == g.W - 2;
#else
  (void)g;
  return false;
#endif
}

#ifdef CNNKERN_X86
// One image: relu and leaky_relu are applied in the register, other activations after.
void conv_c1_image(const float* xn, const float* w, const float* b, float* yn, const ConvGeom& g, Act act,
                   float alpha) {
  const int code = act == Act::relu ? 1 : act == Act::leaky_relu ? 2 : 0;
  avx2::conv_c1_3x3_forward(xn, g.H, g.W, w, b, yn, g.K, code, alpha);
  if (code == 0) activation_inplace(act, yn, g.K * g.PQ(), alpha);
}
#endif

#ifdef CNNKERN_X86
// Split over (image, block of 4 filters), the blocks the kernel forms itself, so that one image (batch-1
// latency) also uses every thread and every value is computed as in one call for all K filters.
void conv_c1_forward(const float* x, const float* w, const float* b, float* y, const ConvGeom& g, Act act,
                     float alpha) {
  const int64_t PQ = g.PQ(), KPQ = g.K * PQ, blocks = (g.K + 3) / 4;
  const int code = act == Act::relu ? 1 : act == Act::leaky_relu ? 2 : 0;
  parallel_for(g.N * blocks, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / blocks, k = i % blocks * 4, kc = std::min<int64_t>(4, g.K - k);
      float* yk = y + n * KPQ + k * PQ;
      avx2::conv_c1_3x3_forward(x + n * g.H * g.W, g.H, g.W, w + k * 9, b ? b + k : nullptr, yk, kc, code,
                                alpha);
      if (code == 0) activation_inplace(act, yk, kc * PQ, alpha);
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
  const int64_t KRS = g.K * 9, KD = KRS + (db ? g.K : 0), chunks = reduction_chunks(g.N, g.PQ(), KD);
  thread_local std::vector<double> partbuf;
  partbuf.assign(static_cast<size_t>(chunks * KD), 0.0);
  double* parts = partbuf.data();  // the caller's buffer (a thread_local name would be each worker's own)
  parallel_chunks(chunks, [&](int64_t c) {
    thread_local std::vector<float> imgbuf;
    float* img = grow(imgbuf, KD);
    double* part = parts + c * KD;
    for (int64_t n = g.N * c / chunks; n < g.N * (c + 1) / chunks; ++n) {
      avx2::conv_c1_3x3_dw(x + n * g.H * g.W, g.H, g.W, dz_of(n), g.K, img, db ? img + KRS : nullptr);
      for (int64_t i = 0; i < KD; ++i) part[i] += img[i];
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
