// Max pooling internals shared with the fused conv + activation + max pool kernels (conv_pool.cpp).
// Neither function touches the GIL: callers release it around them. Both split their work with
// parallel_for, so called from inside a parallel_for they run serially on the calling thread.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/activation.h"

namespace cnnkern {

struct PoolGeom {
  int64_t N, C, H, W, P, Q;
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
};

// Output size per PyTorch's rule (cnnkern/shapes.py pool_out); a window larger than the padded input is a
// py::value_error.
PoolGeom pool_geom(const std::array<int64_t, 4>& x_shape, std::array<int64_t, 2> k, std::array<int64_t, 2> s,
                   std::array<int64_t, 2> p, std::array<int64_t, 2> d, bool ceil_mode);
// Max pooling of one plane per call, its path chosen once for the geometry (only H, W, P, Q and the window
// are read): for callers that loop over planes themselves (batch norm + activation + max pool), without a
// split over the threads or any set-up per plane. Same values and indices as maxpool_forward_impl.
class MaxPlanePool {
 public:
  explicit MaxPlanePool(const PoolGeom& g);
  // x (H,W) -> y, arg (P,Q); arg must not be null
  void operator()(const float* x, float* y, int64_t* arg) const;
  bool gathers() const { return !gather_.empty(); }  // whole planes by the AVX2 gathers (short rows)

 private:
  PoolGeom g_;
  bool runs_;
  std::vector<int32_t> gather_;  // the gathers' window offsets
};

// y (N,C,P,Q) = max over each window of x (N,C,H,W), and argmax (flat index into the H*W plane) unless ap is
// null.
void maxpool_forward_impl(const float* xp, const PoolGeom& g, float* yp, int64_t* ap);
// d[arg[j]] += g[j] for the PQ outputs of one plane of HW (d zeroed by the caller). Returns false if an index
// lies outside [0, HW) (nothing is written for it).
bool maxpool_scatter_plane(const float* g, const int64_t* arg, int64_t PQ, int64_t HW, float* d);
// dx (planes, HW) = 0, then dx[plane][argmax[j]] += dy[j] for the PQ outputs of each plane; with an
// activation, each plane is then mapped through the activation's gradient given its output a (planes, HW).
// Returns false if an index lies outside [0, HW) (nothing is written for it).
bool maxpool_scatter_planes(const float* dy, const int64_t* argmax, int64_t planes, int64_t PQ, int64_t HW,
                            float* dx, Act act, const float* a, float alpha);
// The ValueError text for an argmax outside the plane of `name` with shape x_shape.
std::string argmax_error(int64_t HW, const std::array<int64_t, 4>& x_shape, const char* name);

}  // namespace cnnkern
