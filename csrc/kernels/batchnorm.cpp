// Batch normalisation of NCHW float32 over the n = N*H*W values of each channel (docs/design.md §3).
//   batchnorm2d_forward:  x (N,C,H,W), gamma, beta, running_mean, running_var (C,)
//                         -> y (N,C,H,W), mean (C,), invstd (C,)
//   batchnorm2d_backward: dy (N,C,H,W), x (N,C,H,W), gamma, mean, invstd (C,)
//                         -> dx (N,C,H,W), dgamma (C,), dbeta (C,)
// Channel c is N blocks of H*W contiguous floats starting at (i*C + c)*H*W, i < N. Work is split over
// channels. Reductions run in double with sixteen independent partial sums per channel (a fixed
// association: results depend neither on the thread count nor on the SIMD path; batchnorm_avx2.cpp holds the
// AVX2 lanes and transforms); the per-element transforms run in float.
#include <pybind11/stl.h>

#include <cmath>
#include <optional>
#include <string>
#include <utility>

#include "kernels/activation.h"
#include "runtime/alloc.h"
#include "runtime/bindings.h"
#include "runtime/common.h"

namespace cnnkern {

#ifdef CNNKERN_X86
namespace avx2 {  // batchnorm_avx2.cpp
void bn_sum_lanes(const float* x, int64_t blocks, int64_t stride, int64_t n16, double* lane);
void bn_sq_dev_lanes(const float* x, int64_t blocks, int64_t stride, int64_t n16, double mean, double* lane);
void bn_dy_lanes(const float* dy, const float* x, int64_t blocks, int64_t stride, int64_t n16, double mean,
                 double* ls, double* ld);
void bn_affine(const float* x, int64_t n, float m, float scale, float shift, float* y);
void bn_dx(const float* dy, const float* x, int64_t n, float mdy, float m, float k, float a, float* dx);
}  // namespace avx2
#endif

namespace {

constexpr int kLanes = 16;

// The sixteen-lane partial sums of a channel's blocks (blocks b < blocks at x + b·stride), over each block's
// first n16 (a multiple of 16) elements: lane[j] gathers elements j, j+16, ... of every block, block after
// block. The AVX2 versions give the same bits.
void sum_lanes(const float* x, int64_t blocks, int64_t stride, int64_t n16, double* lane) {
  for (int64_t b = 0; b < blocks; ++b, x += stride)
    for (int64_t i = 0; i < n16; i += kLanes)
      for (int j = 0; j < kLanes; ++j) lane[j] += x[i + j];
}

void sq_dev_lanes(const float* x, int64_t blocks, int64_t stride, int64_t n16, double mean, double* lane) {
  for (int64_t b = 0; b < blocks; ++b, x += stride)
    for (int64_t i = 0; i < n16; i += kLanes)
      for (int j = 0; j < kLanes; ++j) {
        const double d = x[i + j] - mean;
        lane[j] += d * d;
      }
}

void dy_lanes(const float* dy, const float* x, int64_t blocks, int64_t stride, int64_t n16, double mean,
              double* ls, double* ld) {
  for (int64_t b = 0; b < blocks; ++b, dy += stride, x += stride)
    for (int64_t i = 0; i < n16; i += kLanes)
      for (int j = 0; j < kLanes; ++j) {
        ls[j] += dy[i + j];
        ld[j] += dy[i + j] * (x[i + j] - mean);
      }
}

void affine(const float* x, int64_t n, float m, float scale, float shift, float* y) {
  for (int64_t k = 0; k < n; ++k) y[k] = (x[k] - m) * scale + shift;
}

void train_dx(const float* dy, const float* x, int64_t n, float mdy, float m, float k, float a, float* dx) {
  for (int64_t j = 0; j < n; ++j) dx[j] = (dy[j] - mdy - (x[j] - m) * k) * a;
}

// The kernels of the SIMD path in use (the AVX-512 path runs the AVX2 ones).
struct BnKernels {
  void (*sum)(const float*, int64_t, int64_t, int64_t, double*);
  void (*sq_dev)(const float*, int64_t, int64_t, int64_t, double, double*);
  void (*dy)(const float*, const float*, int64_t, int64_t, int64_t, double, double*, double*);
  void (*affine)(const float*, int64_t, float, float, float, float*);
  void (*dx)(const float*, const float*, int64_t, float, float, float, float, float*);
};

BnKernels kernels_for_simd() {
#ifdef CNNKERN_X86
  if (simd_level() != Simd::scalar)
    return {avx2::bn_sum_lanes, avx2::bn_sq_dev_lanes, avx2::bn_dy_lanes, avx2::bn_affine, avx2::bn_dx};
#endif
  return {sum_lanes, sq_dev_lanes, dy_lanes, affine, train_dx};
}

// Each channel sum below (the channel: N blocks of HW values at stride C·HW) is: the lanes over the blocks'
// first n16 values, the blocks' tails summed alone in block order, then the sixteen lanes added to that.

// Σ x[i] over one channel.
double channel_sum(const BnKernels& k, const float* x, int64_t blocks, int64_t stride, int64_t n) {
  double lane[kLanes] = {}, s = 0.0;
  const int64_t n16 = n / kLanes * kLanes;
  k.sum(x, blocks, stride, n16, lane);
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t i = n16; i < n; ++i) s += x[b * stride + i];
  for (int j = 0; j < kLanes; ++j) s += lane[j];
  return s;
}

// Σ (x[i] - mean)² over one channel (the second pass of the two-pass variance).
double channel_sq_dev(const BnKernels& k, const float* x, int64_t blocks, int64_t stride, int64_t n,
                      double mean) {
  double lane[kLanes] = {}, s = 0.0;
  const int64_t n16 = n / kLanes * kLanes;
  k.sq_dev(x, blocks, stride, n16, mean, lane);
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t i = n16; i < n; ++i) s += (x[b * stride + i] - mean) * (x[b * stride + i] - mean);
  for (int j = 0; j < kLanes; ++j) s += lane[j];
  return s;
}

// Σ dy[i] into sdy and Σ dy[i]·(x[i] - mean) into dot over one channel.
void channel_dy_sums(const BnKernels& k, const float* dy, const float* x, int64_t blocks, int64_t stride,
                     int64_t n, double mean, double& sdy, double& dot) {
  double ls[kLanes] = {}, ld[kLanes] = {}, s = 0.0, d = 0.0;
  const int64_t n16 = n / kLanes * kLanes;
  k.dy(dy, x, blocks, stride, n16, mean, ls, ld);
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t i = b * stride + n16; i < b * stride + n; ++i) {
      s += dy[i];
      d += dy[i] * (x[i] - mean);
    }
  for (int j = 0; j < kLanes; ++j) {
    s += ls[j];
    d += ld[j];
  }
  sdy = s;
  dot = d;
}

struct Dims {
  int64_t N, C, HW;
};

Dims dims_of(const carray<float>& x, const char* name) {
  if (x.ndim() != 4) throw py::value_error(std::string(name) + " must be 4-d (N,C,H,W)");
  return {x.shape(0), x.shape(1), x.shape(2) * x.shape(3)};
}

void check_channels(const carray<float>& a, int64_t C, const char* name) {
  if (a.ndim() != 1 || a.shape(0) != C)
    throw py::value_error(std::string(name) + " must have shape (C,) = (" + std::to_string(C) + ",)");
}

// y = (x - mean)·(gamma·invstd) + beta. Training: mean and the biased variance Σ(x - mean)²/n from the batch,
// running_mean/var updated in place as (1-m)·old + m·new with the unbiased variance var·n/(n-1).
// Eval: running_mean and 1/sqrt(running_var + eps); these are the returned mean and invstd.
// act: applied to each block of y as it is written (batchnorm2d_act_forward), while it is in cache; the
// same function activation_forward runs, so the same bits as the unfused pair.
py::tuple batchnorm2d_forward_act(const carray<float>& x, const carray<float>& gamma,
                                  const carray<float>& beta, carray<float> running_mean,
                                  carray<float> running_var, bool training, double momentum, double eps,
                                  Act act, float alpha) {
  const Dims d = dims_of(x, "x");
  check_channels(gamma, d.C, "gamma");
  check_channels(beta, d.C, "beta");
  check_channels(running_mean, d.C, "running_mean");
  check_channels(running_var, d.C, "running_var");
  const int64_t count = d.N * d.HW;
  if (training && count < 2)
    throw py::value_error("batchnorm2d_forward in training needs more than one value per channel (N*H*W = " +
                          std::to_string(count) + ")");
  carray<float> y = new_array<float>({x.shape(0), x.shape(1), x.shape(2), x.shape(3)});
  carray<float> mean_out(d.C), invstd_out(d.C);
  const float *xp = x.data(), *gp = gamma.data(), *bp = beta.data();
  float *rm = running_mean.mutable_data(), *rv = running_var.mutable_data();
  float *yp = y.mutable_data(), *mp = mean_out.mutable_data(), *ip = invstd_out.mutable_data();
  const BnKernels kern = kernels_for_simd();
  {
    py::gil_scoped_release release;
    parallel_for(d.C, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        double mean, invstd;
        if (training) {
          const float* xc = xp + c * d.HW;
          mean = channel_sum(kern, xc, d.N, d.C * d.HW, d.HW) / count;
          const double var = channel_sq_dev(kern, xc, d.N, d.C * d.HW, d.HW, mean) / count;
          invstd = 1.0 / std::sqrt(var + eps);
          rm[c] = static_cast<float>((1.0 - momentum) * rm[c] + momentum * mean);
          rv[c] = static_cast<float>((1.0 - momentum) * rv[c] + momentum * var * count / (count - 1));
        } else {
          mean = rm[c];
          invstd = 1.0 / std::sqrt(static_cast<double>(rv[c]) + eps);
        }
        const float m = static_cast<float>(mean), scale = static_cast<float>(gp[c] * invstd), shift = bp[c];
        mp[c] = m;
        ip[c] = static_cast<float>(invstd);
        for (int64_t i = 0; i < d.N; ++i) {
          const int64_t off = (i * d.C + c) * d.HW;
          kern.affine(xp + off, d.HW, m, scale, shift, yp + off);
          activation_inplace(act, yp + off, d.HW, alpha);
        }
      }
    });
  }
  return py::make_tuple(y, mean_out, invstd_out);
}

py::tuple batchnorm2d_forward(const carray<float>& x, const carray<float>& gamma, const carray<float>& beta,
                              carray<float> running_mean, carray<float> running_var, bool training,
                              double momentum, double eps) {
  return batchnorm2d_forward_act(x, gamma, beta, std::move(running_mean), std::move(running_var), training,
                                 momentum, eps, Act::none, 0.0f);
}

py::tuple batchnorm2d_act_forward(const carray<float>& x, const carray<float>& gamma,
                                  const carray<float>& beta, carray<float> running_mean,
                                  carray<float> running_var, bool training, double momentum, double eps,
                                  const std::optional<std::string>& activation, double alpha) {
  return batchnorm2d_forward_act(x, gamma, beta, std::move(running_mean), std::move(running_var), training,
                                 momentum, eps, parse_act(activation), static_cast<float>(alpha));
}

// With x̂ = (x - mean)·invstd: dgamma = Σ dy·x̂, dbeta = Σ dy, and
//   training: dx = gamma·invstd·(dy - Σdy/n - (x - mean)·invstd²·Σ dy·(x - mean)/n)
//             (= gamma·invstd/n·(n·dy - Σdy - x̂·Σ dy·x̂): the batch statistics depend on x)
//   eval:     dx = gamma·invstd·dy
py::tuple batchnorm2d_backward(const carray<float>& dy, const carray<float>& x, const carray<float>& gamma,
                               const carray<float>& mean, const carray<float>& invstd, bool training) {
  const Dims d = dims_of(x, "x");
  if (dy.ndim() != 4 || dy.size() != x.size()) throw py::value_error("dy must have the shape of x");
  check_channels(gamma, d.C, "gamma");
  check_channels(mean, d.C, "mean");
  check_channels(invstd, d.C, "invstd");
  const double count = static_cast<double>(d.N * d.HW);
  carray<float> dx = new_array<float>({x.shape(0), x.shape(1), x.shape(2), x.shape(3)});
  carray<float> dgamma(d.C), dbeta(d.C);
  const float *dyp = dy.data(), *xp = x.data(), *gp = gamma.data(), *mp = mean.data(), *ip = invstd.data();
  float *dxp = dx.mutable_data(), *dgp = dgamma.mutable_data(), *dbp = dbeta.mutable_data();
  const BnKernels kern = kernels_for_simd();
  {
    py::gil_scoped_release release;
    parallel_for(d.C, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        const double is = ip[c];
        double sdy, dot;
        channel_dy_sums(kern, dyp + c * d.HW, xp + c * d.HW, d.N, d.C * d.HW, d.HW, mp[c], sdy, dot);
        dgp[c] = static_cast<float>(dot * is);
        dbp[c] = static_cast<float>(sdy);
        const float a = static_cast<float>(gp[c] * is), m = mp[c];
        const float mdy = training ? static_cast<float>(sdy / count) : 0.0f;
        const float k = training ? static_cast<float>(dot * is * is / count) : 0.0f;
        for (int64_t i = 0; i < d.N; ++i) {
          const int64_t off = (i * d.C + c) * d.HW;
          if (training)
            kern.dx(dyp + off, xp + off, d.HW, mdy, m, k, a, dxp + off);
          else
            for (int64_t j = 0; j < d.HW; ++j) dxp[off + j] = dyp[off + j] * a;
        }
      }
    });
  }
  return py::make_tuple(dx, dgamma, dbeta);
}

}  // namespace

void bind_batchnorm(py::module_& m) {
  // The running statistics are updated in place: noconvert makes a wrong dtype or a non-contiguous array
  // a TypeError instead of a silently updated copy.
  m.def("batchnorm2d_forward", &batchnorm2d_forward, py::arg("x"), py::arg("gamma"), py::arg("beta"),
        py::arg("running_mean").noconvert(), py::arg("running_var").noconvert(), py::kw_only(),
        py::arg("training"), py::arg("momentum"), py::arg("eps"),
        "x (N,C,H,W), gamma, beta, running_mean, running_var (C,) -> (y, mean (C,), invstd (C,)).");
  m.def("batchnorm2d_act_forward", &batchnorm2d_act_forward, py::arg("x"), py::arg("gamma"), py::arg("beta"),
        py::arg("running_mean").noconvert(), py::arg("running_var").noconvert(), py::kw_only(),
        py::arg("training"), py::arg("momentum"), py::arg("eps"), py::arg("activation") = py::none(),
        py::arg("alpha") = 0.01,
        "batchnorm2d_forward with the activation applied in its normalising pass -> (act(y), mean, invstd).");
  m.def("batchnorm2d_backward", &batchnorm2d_backward, py::arg("dy"), py::arg("x"), py::arg("gamma"),
        py::arg("mean"), py::arg("invstd"), py::kw_only(), py::arg("training"),
        "dy, x (N,C,H,W), gamma, mean, invstd (C,) -> (dx, dgamma (C,), dbeta (C,)).");
}

}  // namespace cnnkern
