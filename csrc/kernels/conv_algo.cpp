// Which conv algorithms can run a geometry, and the fixed heuristics that pick one (docs/autotune.md).
// The Python side (cnnkern/autotune.py) times the applicable ones once per shape, SIMD path and thread count
// and passes its choice to the *_algo entry points; CNNKERN_AUTOTUNE=0 passes none (auto_: the heuristics).
// Every algorithm computes each result bitwise the same at any thread count (docs/threads.md).
#include <pybind11/stl.h>

#include <array>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/conv.h"
#include "kernels/conv_direct.h"
#include "kernels/conv_igemm.h"
#include "kernels/conv_winograd.h"
#include "runtime/bindings.h"

namespace cnnkern {

namespace {

constexpr std::array<ConvAlgo, 5> kAlgos{ConvAlgo::im2col, ConvAlgo::igemm, ConvAlgo::c1, ConvAlgo::direct,
                                         ConvAlgo::winograd};

// Some indirect GEMM variant runs g: the forward and dw of every one of them; dx where it is stride 1 (and
// 8+ channels when padded), else dx stays on im2col + GEMM (conv_backward_impl).
bool igemm_runs(const ConvGeom& g) {
  return conv_igemm_applies(g) || conv_igemm_padded_dw_applies(g) || conv_igemm_grouped_applies(g) ||
         conv_igemm_strided_applies(g);
}

bool runs(const ConvGeom& g, ConvAlgo a) {
  switch (a) {
    case ConvAlgo::igemm:
      return igemm_runs(g);
    case ConvAlgo::c1:
      return conv_c1_applies(g);
    case ConvAlgo::direct:
      return conv_direct_applies(g);
    case ConvAlgo::winograd:
      return conv_winograd_applies(g);
    default:
      return true;  // im2col + GEMM runs every geometry
  }
}

// Winograd's 16 GEMMs are C (input) deep and K (output channels) wide, and its transforms cost about as much
// as its GEMMs take. Measured against the indirect GEMM on a quiet machine (benchmarks/conv_algo_shapes.py,
// batch 32, 1 thread; docs/winograd.md): forward 1.05-1.6x faster with 64 -> 64 channels at 12x12 to 16x16
// and 1.0-1.35x with 32 -> 64 at 16x16 to 32x32, mixed with 32 -> 32 (0.8-1.2x); backward (dx by Winograd)
// 1.2-1.3x with 64 -> 64 and 1.15-1.2x with 32 channels at 16x16 and up; slower with 16 channels and below
// 12x12. The filter transform costs the same at any batch: below 2048 output pixels in all (batch 1-4 at
// 16x16, 1 at 32x32) the indirect GEMM was faster (forward, 32/64 -> 64 channels at 12x12 to 32x32, batch
// 1-16, 1 and 2 threads: Winograd 1.2-3.9x its time at batch 1, 0.9-1.0x at 2048 pixels, 0.6-0.9x above).
bool winograd_pays(const ConvGeom& g, bool backward) {
  if (!conv_winograd_applies(g) || g.H * g.W < 144) return false;
  const int64_t PQ = g.P * g.Q;
  if (g.N * PQ < 2048) return false;
  if (g.C >= 64 && g.K >= 64) return PQ >= 144;
  if (!backward) return g.C >= 32 && g.K >= 64 && PQ >= 256;
  return g.C >= 32 && g.K >= 32 && PQ >= 256;
}

// The heuristics: c1 first, then Winograd where it pays, then the indirect GEMMs, the depthwise direct
// kernels, else im2col + GEMM. The backward takes the direct kernels first. A padded conv of fewer than 8
// channels runs its forward and dw on the indirect GEMM (its dx stays on im2col + GEMM): measured forward,
// 1-6 input channels, 5x5 and 7x7, batch 1 / 32 / 128, 1 and 2 threads (benchmarks/NOTES.md), 0.33-0.85x
// im2col + GEMM's time but for one case of 1.04 (1 -> 6 channels at 28x28, batch 32, 2 threads).
ConvAlgo heuristic(const ConvGeom& g, bool backward, bool winograd_ok = true) {
  if (backward && conv_direct_applies(g)) return ConvAlgo::direct;
  if (conv_c1_applies(g)) return ConvAlgo::c1;
  if (winograd_ok && winograd_pays(g, backward)) return ConvAlgo::winograd;
  if (conv_igemm_applies(g) || conv_igemm_padded_dw_applies(g) || conv_igemm_grouped_applies(g) ||
      conv_igemm_strided_applies(g))
    return ConvAlgo::igemm;
  if (conv_direct_applies(g)) return ConvAlgo::direct;
  return ConvAlgo::im2col;
}

}  // namespace

ConvAlgo conv_dw_algo_beside_winograd(const ConvGeom& g) { return heuristic(g, true, false); }

const char* conv_algo_name(ConvAlgo a) {
  switch (a) {
    case ConvAlgo::im2col:
      return "im2col";
    case ConvAlgo::igemm:
      return "igemm";
    case ConvAlgo::c1:
      return "c1";
    case ConvAlgo::direct:
      return "direct";
    case ConvAlgo::winograd:
      return "winograd";
    default:
      return "auto";
  }
}

ConvAlgo parse_conv_algo(const std::optional<std::string>& name) {
  if (!name || *name == "auto") return ConvAlgo::auto_;
  for (ConvAlgo a : kAlgos)
    if (*name == conv_algo_name(a)) return a;
  throw std::invalid_argument(
      "algo must be None, 'auto', 'im2col', 'igemm', 'c1', 'direct' or 'winograd', got '" + *name + "'");
}

std::vector<ConvAlgo> conv_algos(const ConvGeom& g, bool backward) {
  const ConvAlgo first = heuristic(g, backward);
  std::vector<ConvAlgo> out{first};
  for (ConvAlgo a : kAlgos)
    if (a != first && runs(g, a)) out.push_back(a);
  return out;
}

ConvAlgo resolve_conv_algo(const ConvGeom& g, bool backward, ConvAlgo a) {
  if (a == ConvAlgo::auto_) return heuristic(g, backward);
  if (runs(g, a)) return a;
  std::string can;
  for (ConvAlgo b : conv_algos(g, backward)) can += std::string(can.empty() ? "" : ", ") + conv_algo_name(b);
  throw std::invalid_argument(std::string("conv algorithm '") + conv_algo_name(a) +
                              "' cannot run this geometry on the current SIMD path; these can: " + can);
}

void bind_conv_algo(py::module_& m) {
  m.def(
      "conv_algos",
      [](std::array<int64_t, 4> x_shape, std::array<int64_t, 4> w_shape, std::array<int64_t, 2> stride,
         std::array<int64_t, 4> padding, std::array<int64_t, 2> dilation, int64_t groups, bool backward) {
        const ConvGeom g = conv_geom_shapes(x_shape, w_shape, stride, padding, dilation, groups);
        std::vector<std::string> out;
        for (ConvAlgo a : conv_algos(g, backward)) out.emplace_back(conv_algo_name(a));
        return out;
      },
      py::arg("x_shape"), py::arg("w_shape"), py::kw_only(), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("backward"),
      "The conv algorithms that can run this geometry on the current SIMD path, the fixed heuristics' choice "
      "first: 'im2col', 'igemm', 'c1', 'direct', 'winograd'.");
}

}  // namespace cnnkern
