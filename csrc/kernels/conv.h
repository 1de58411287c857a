// conv.cpp's entry points for the fused conv + activation + max pool kernels (conv_pool.cpp). None touches
// the GIL (callers release it); conv_forward_dispatch and conv_backward_impl split their work with
// parallel_for, so called from inside a parallel_for they run serially on the calling thread.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "kernels/activation.h"
#include "runtime/bindings.h"
#include "kernels/conv_im2col.h"

namespace cnnkern {

// "(2, 3, 4)" for error messages ("(5,)" for one dimension).
std::string shape_str(const py::array& a);
// The geometry of conv2d(x, w) with padding (top, bottom, left, right); std::invalid_argument for what a
// direct call could get wrong (the front door already checked).
ConvGeom conv_geom(const carray<float>& x, const carray<float>& w, std::array<int64_t, 2> stride,
                   std::array<int64_t, 4> padding, std::array<int64_t, 2> dilation, int64_t groups);
// The same from shapes alone (for conv_algos, which has no arrays).
ConvGeom conv_geom_shapes(std::array<int64_t, 4> xs, std::array<int64_t, 4> ws, std::array<int64_t, 2> stride,
                          std::array<int64_t, 4> padding, std::array<int64_t, 2> dilation, int64_t groups);

// The conv algorithms a caller may pick per call (conv_algo.cpp, docs/autotune.md); auto_ is the fixed
// heuristics, which always pick one of the others. Each is bitwise thread-count independent on its own.
//   im2col: im2col + GEMM (conv.cpp, any geometry)   igemm: the indirect GEMMs (conv_igemm*.cpp)
//   c1:     1-4 channel 3x3 direct kernels (dx elsewhere)               direct: depthwise direct kernels
//   winograd: F(2x2, 3x3) for 3x3 stride-1 convs (conv_winograd.cpp; backward: dx by it, dw and db as the
//             heuristics' backward choice computes them)
enum class ConvAlgo { auto_, im2col, igemm, c1, direct, winograd };
// nullopt / "auto" -> auto_; an unknown name: std::invalid_argument listing the names.
ConvAlgo parse_conv_algo(const std::optional<std::string>& name);
const char* conv_algo_name(ConvAlgo a);
// The algorithms that can run g (forward, or backward), the heuristics' choice first.
std::vector<ConvAlgo> conv_algos(const ConvGeom& g, bool backward);
// The backward algorithm computing dw and db when Winograd computes dx: the heuristics' choice without it.
ConvAlgo conv_dw_algo_beside_winograd(const ConvGeom& g);
// auto_ -> the heuristics' choice; one that cannot run g: std::invalid_argument naming the ones that can.
ConvAlgo resolve_conv_algo(const ConvGeom& g, bool backward, ConvAlgo a);

// y (N,K,P,Q) = act(conv(x, w) + b), b may be null, by `algo` (auto_: the fixed heuristics).
void conv_forward_dispatch(const float* x, const float* w, const float* b, float* y, const ConvGeom& g,
                           Act act, float alpha, ConvAlgo algo = ConvAlgo::auto_);
// dx, dw, db (each null when not wanted) from dy (N,K,P,Q), by `algo` (auto_: the fixed heuristics).
void conv_backward_impl(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                        const ConvGeom& g, ConvAlgo algo = ConvAlgo::auto_);
// conv2d_backward's outputs: new arrays for the gradients asked for (pointer null and object None otherwise).
struct ConvGrads {
  ConvGrads(const ConvGeom& g, bool need_dx, bool need_dw, bool need_db);
  float *dx = nullptr, *dw = nullptr, *db = nullptr;
  py::object dx_obj = py::none(), dw_obj = py::none(), db_obj = py::none();
  py::tuple tuple() const { return py::make_tuple(dx_obj, dw_obj, db_obj); }
};
// 1 to 4 input channels, 3x3, stride 1, no dilation, one group, any padding, on a SIMD path: the direct
// kernels below apply (conv_c1.cpp).
bool conv_c1_applies(const ConvGeom& g);
// Image xn's C channels as planes of (P + 2) x (Q + 2) whose unpadded conv is g's: xn itself when g has no
// padding, else a zero-bordered copy in buf.
const float* conv_c1_planes(const float* xn, const ConvGeom& g, std::vector<float>& buf);

#ifdef CNNKERN_X86
// conv_c1.cpp: y (N,K,P,Q) = act(conv(x, w) + b) of a conv_c1_applies geometry, (image, 4 filters) split over
// the threads.
void conv_c1_forward(const float* x, const float* w, const float* b, float* y, const ConvGeom& g, Act act,
                     float alpha);
// dw (and db when not null) over the batch of a conv_c1_applies geometry, from dy (N,K,P,Q).
void conv_c1_dw(const float* dy, const float* x, float* dw, float* db, const ConvGeom& g);
// One image of a conv_c1_applies geometry: yn (K,P,Q) = act(conv(xn (C,H,W), w) + b).
void conv_c1_image(const float* xn, const float* w, const float* b, float* yn, const ConvGeom& g, Act act,
                   float alpha);
// dw (K,C,3,3) and db (K,) when not null, of a conv_c1_applies geometry, from image n's dz (K,P,Q) as
// dz_of(n) returns it (called once per image, on the thread summing that image; the pointer must stay valid
// until that thread's next call). Each chunk of images (reduction_chunks) is summed in double, the chunks
// added in order: the result depends neither on the thread count, nor on timing, nor on where dz comes from.
void conv_c1_dw_images(const float* x, float* dw, float* db, const ConvGeom& g,
                       const std::function<const float*(int64_t)>& dz_of);
namespace avx2 {  // conv_c1_avx2.cpp
// C channels of (H,W) planes, w (K,C,3,3): y (K,H-2,W-2), the channels' terms added in order per output.
void conv_c1_3x3_forward(const float* x, int64_t H, int64_t W, int64_t C, const float* w, const float* b,
                         float* y, int64_t K, int act, float alpha);
// conv_c1_3x3_forward (act 0 none, 1 relu, 2 leaky_relu) then the 2x2 / stride 2 max pool of each plane, the
// conv output never stored: y (K,P/2,Q/2) and arg (the same shape, flat index into the P*Q plane; null: not
// wanted), both equal to those of the unfused pair. Needs Q/2 >= 8.
void conv_c1_3x3_pool2(const float* x, int64_t H, int64_t W, const float* w, const float* b, int64_t K,
                       int act, float alpha, float* y, int64_t* arg);
// dw (K,9) of one image (written, not accumulated); db (K,) too when not null.
void conv_c1_3x3_dw(const float* x, int64_t H, int64_t W, const float* dy, int64_t K, float* dw, float* db);
}  // namespace avx2
#endif

}  // namespace cnnkern
