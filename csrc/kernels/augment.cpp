// Data augmentation, forward only (issue 16). The per-sample parameters are arrays drawn by the caller, so
// every backend produces the same images for the same seed. One task per (n, c) plane.
//   augment_shift_forward:  flip (horizontal, vertical), then y[i, j] = flipped[i - dy, j - dx] (zero
//   outside;
//     a crop is a negative offset into a smaller output), then the erase box set to zero. Pure copies: exact.
//   augment_affine_forward: output (i, j) samples x bilinearly at column a0 j + a1 i + a2, row a3 j + a4 i +
//   a5
//     (pixel centres at integers); a tap outside the image reads fill_value (Keras's fill_mode='constant').
//   augment_color_forward:  clip((x - mean) * contrast + mean + brightness, low, high), the mean over the
//     plane summed in double. The AVX2 path (augment_avx2.cpp) sums in four double lanes and applies the
//     same operations in the same order; the clip keeps NaN, as the scalar comparisons do.
// The flips and copies are memory-bound (memcpy and a reversed loop); the AVX2 paths (augment_avx2.cpp) are
// the affine kernel, eight output pixels at a time with gathered taps, and the colour pass.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <string>

#include <pybind11/stl.h>

#include "runtime/alloc.h"
#include "runtime/bindings.h"
#include "runtime/common.h"

namespace cnnkern {

#ifdef CNNKERN_X86
namespace avx2 {  // augment_avx2.cpp
void affine_plane(const float* src, float* dst, int64_t H, int64_t W, const float* t, float fill);
double plane_sum(const float* x, int64_t n);
void color_plane(const float* x, float* y, int64_t n, float mean, float contrast, float brightness, float lo,
                 float hi);
}  // namespace avx2
#endif

namespace {

using Pair = std::array<int64_t, 2>;

struct Dims {
  int64_t N, C, H, W;
};

Dims dims4(const carray<float>& x) {
  if (x.ndim() != 4) throw py::value_error("x must be 4-d (N,C,H,W)");
  return {x.shape(0), x.shape(1), x.shape(2), x.shape(3)};
}

template <typename T>
void check_params(const carray<T>& a, const char* name, int64_t n, int64_t cols) {
  const bool ok = cols == 0 ? (a.ndim() == 1 && a.shape(0) == n)
                            : (a.ndim() == 2 && a.shape(0) == n && a.shape(1) == cols);
  if (!ok)
    throw py::value_error(std::string(name) + " must have shape (N" +
                          (cols ? "," + std::to_string(cols) : "") + ") for N = " + std::to_string(n));
}

// fn(p) for each plane p in [0, planes): the pool only when there is enough work to pay for waking it.
template <typename Fn>
void for_planes(int64_t planes, int64_t plane_size, const Fn& fn) {
  py::gil_scoped_release release;
  run_elementwise(planes * plane_size, [&](int64_t b, int64_t e) {
    // run_elementwise splits elements; map each split to the planes that start inside it
    for (int64_t p = (b + plane_size - 1) / plane_size; p < planes && p * plane_size < e; ++p) fn(p);
  });
}

int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

carray<float> augment_shift_forward(const carray<float>& x, const carray<int64_t>& flip,
                                    const carray<int64_t>& offset, const carray<int64_t>& erase,
                                    Pair out_hw) {
  const Dims d = dims4(x);
  check_params(flip, "flip", d.N, 2);
  check_params(offset, "offset", d.N, 2);
  check_params(erase, "erase", d.N, 4);
  const int64_t OH = out_hw[0], OW = out_hw[1];
  if (OH < 1 || OW < 1) throw py::value_error("out_hw must be >= 1");
  carray<float> y = new_array<float>({d.N, d.C, OH, OW});
  const float* xp = x.data();
  float* yp = y.mutable_data();
  const int64_t *fl = flip.data(), *of = offset.data(), *er = erase.data();
  for_planes(d.N * d.C, OH * OW, [&](int64_t p) {
    const int64_t n = p / d.C;
    const float* src = xp + p * d.H * d.W;
    float* dst = yp + p * OH * OW;
    const bool fh = fl[2 * n] != 0, fv = fl[2 * n + 1] != 0;
    const int64_t dy = of[2 * n], dx = of[2 * n + 1];
    const int64_t i0 = clamp64(dy, 0, OH), i1 = clamp64(d.H + dy, i0, OH);
    const int64_t j0 = clamp64(dx, 0, OW), j1 = clamp64(d.W + dx, j0, OW);
    for (int64_t i = 0; i < OH; ++i) {
      float* row = dst + i * OW;
      if (i < i0 || i >= i1 || j0 == j1) {
        std::fill(row, row + OW, 0.0f);
        continue;
      }
      std::fill(row, row + j0, 0.0f);
      std::fill(row + j1, row + OW, 0.0f);
      const int64_t si = fv ? d.H - 1 - (i - dy) : i - dy;
      const float* srow = src + si * d.W;
      if (!fh) {
        std::memcpy(row + j0, srow + (j0 - dx), static_cast<size_t>(j1 - j0) * sizeof(float));
      } else {
        const float* rev = srow + (d.W - 1 + dx);  // row[j] = srow[W - 1 - (j - dx)]
        for (int64_t j = j0; j < j1; ++j) row[j] = rev[-j];
      }
    }
    const int64_t* box = er + 4 * n;
    const int64_t r0 = clamp64(box[0], 0, OH), r1 = clamp64(box[0] + box[2], r0, OH);
    const int64_t c0 = clamp64(box[1], 0, OW), c1 = clamp64(box[1] + box[3], c0, OW);
    for (int64_t i = r0; i < r1; ++i) std::fill(dst + i * OW + c0, dst + i * OW + c1, 0.0f);
  });
  return y;
}

carray<float> augment_affine_forward(const carray<float>& x, const carray<float>& theta, double fill_value) {
  const Dims d = dims4(x);
  check_params(theta, "theta", d.N, 6);
  carray<float> y = new_array<float>({d.N, d.C, d.H, d.W});
  const float* xp = x.data();
  const float* tp = theta.data();
  float* yp = y.mutable_data();
  const float fill = static_cast<float>(fill_value);
  const float Hmax = static_cast<float>(d.H - 1), Wmax = static_cast<float>(d.W - 1);
  bool vector = false;
#ifdef CNNKERN_X86
  // the same operations in the same order; AVX-512 runs these AVX2 loops (gathers, not arithmetic, bound
  // them)
  vector = simd_level() != Simd::scalar && d.H * d.W < (int64_t{1} << 31);
#endif
  for_planes(d.N * d.C, d.H * d.W, [&](int64_t p) {
    const float* t = tp + 6 * (p / d.C);
    const float* src = xp + p * d.H * d.W;
    float* dst = yp + p * d.H * d.W;
#ifdef CNNKERN_X86
    if (vector) {
      avx2::affine_plane(src, dst, d.H, d.W, t, fill);
      return;
    }
#endif
    // the value of tap (ty, tx), both integral floats; the comparisons are false for NaN, which reads fill
    auto tap = [&](float ty, float tx) {
      if (ty >= 0.0f && ty <= Hmax && tx >= 0.0f && tx <= Wmax)
        return src[static_cast<int64_t>(ty) * d.W + static_cast<int64_t>(tx)];
      return fill;
    };
    for (int64_t i = 0; i < d.H; ++i) {
      const float fi = static_cast<float>(i);
      for (int64_t j = 0; j < d.W; ++j) {
        const float fj = static_cast<float>(j);
        const float sx = t[0] * fj + t[1] * fi + t[2];
        const float sy = t[3] * fj + t[4] * fi + t[5];
        const float x0 = std::floor(sx), y0 = std::floor(sy);
        const float fx = sx - x0, fy = sy - y0;
        const float wx0 = 1.0f - fx, wy0 = 1.0f - fy;
        float acc = 0.0f;
        acc += wy0 * wx0 * tap(y0, x0);
        acc += wy0 * fx * tap(y0, x0 + 1.0f);
        acc += fy * wx0 * tap(y0 + 1.0f, x0);
        acc += fy * fx * tap(y0 + 1.0f, x0 + 1.0f);
        dst[i * d.W + j] = acc;
      }
    }
  });
  return y;
}

double plane_sum(const float* x, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  return s;
}

void color_plane(const float* x, float* y, int64_t n, float mean, float contrast, float brightness, float lo,
                 float hi) {
  for (int64_t i = 0; i < n; ++i) {
    float v = (x[i] - mean) * contrast + mean + brightness;
    v = v < lo ? lo : v;
    y[i] = v > hi ? hi : v;
  }
}

carray<float> augment_color_forward(const carray<float>& x, const carray<float>& contrast,
                                    const carray<float>& brightness, double low, double high) {
  const Dims d = dims4(x);
  check_params(contrast, "contrast", d.N, 0);
  check_params(brightness, "brightness", d.N, 0);
  carray<float> y = new_array<float>({d.N, d.C, d.H, d.W});
  const float* xp = x.data();
  float* yp = y.mutable_data();
  const float *cp = contrast.data(), *bp = brightness.data();
  const float lo = static_cast<float>(low), hi = static_cast<float>(high);
  const int64_t hw = d.H * d.W;
  auto sum = plane_sum;
  auto apply = color_plane;
#ifdef CNNKERN_X86
  if (simd_level() != Simd::scalar) {  // memory-bound: the AVX-512 path runs the AVX2 loops
    sum = avx2::plane_sum;
    apply = avx2::color_plane;
  }
#endif
  for_planes(d.N * d.C, hw, [&](int64_t p) {
    const int64_t n = p / d.C;
    const float mean = static_cast<float>(sum(xp + p * hw, hw) / static_cast<double>(hw));
    apply(xp + p * hw, yp + p * hw, hw, mean, cp[n], bp[n], lo, hi);
  });
  return y;
}

}  // namespace

void bind_augment(py::module_& m) {
  m.def("augment_shift_forward", &augment_shift_forward, py::arg("x"), py::arg("flip"), py::arg("offset"),
        py::arg("erase"), py::kw_only(), py::arg("out_hw"),
        "x (N,C,H,W), flip (N,2), offset (N,2), erase (N,4) int64 -> y (N,C,OH,OW).");
  m.def("augment_affine_forward", &augment_affine_forward, py::arg("x"), py::arg("theta"), py::kw_only(),
        py::arg("fill_value"), "x (N,C,H,W), theta (N,6) -> y (N,C,H,W), bilinear.");
  m.def("augment_color_forward", &augment_color_forward, py::arg("x"), py::arg("contrast"),
        py::arg("brightness"), py::kw_only(), py::arg("low"), py::arg("high"),
        "x (N,C,H,W), contrast (N,), brightness (N,) -> y (N,C,H,W).");
}

}  // namespace cnnkern
