// Batch normalisation of NCHW float32 over the n = N*H*W values of each channel (docs/design.md §3).
//   batchnorm2d_forward:  x (N,C,H,W), gamma, beta, running_mean, running_var (C,)
//                         -> y (N,C,H,W), mean (C,), invstd (C,)
//   batchnorm2d_backward: dy (N,C,H,W), x (N,C,H,W), gamma, mean, invstd (C,)
//                         -> dx (N,C,H,W), dgamma (C,), dbeta (C,)
//   batchnorm2d_act_maxpool_forward / _backward: batch norm, activation and max pool as one pair (below)
// Channel c is N blocks of H*W contiguous floats starting at (i*C + c)*H*W, i < N. Work is split over
// channels. Reductions run in double with sixteen independent partial sums per channel (a fixed
// association: results depend neither on the thread count nor on the SIMD path; batchnorm_avx2.cpp holds the
// AVX2 lanes and transforms); the per-element transforms run in float.
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kernels/activation.h"
#include "kernels/pool.h"
#include "runtime/alloc.h"
#include "runtime/bindings.h"
#include "runtime/common.h"

namespace cnnkern {

#ifdef CNNKERN_X86
namespace avx2 {  // batchnorm_avx2.cpp
void bn_sum_lanes(const float* x, int64_t blocks, int64_t stride, int64_t n16, double* lane);
void bn_sq_dev_lanes(const float* x, int64_t blocks, int64_t stride, int64_t n16, double mean, double* lane);
void bn_dy_lanes(const float* dy, int64_t dy_stride, const float* x, int64_t x_stride, int64_t blocks,
                 int64_t n16, double mean, double* ls, double* ld);
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

void dy_lanes(const float* dy, int64_t dy_stride, const float* x, int64_t x_stride, int64_t blocks,
              int64_t n16, double mean, double* ls, double* ld) {
  for (int64_t b = 0; b < blocks; ++b, dy += dy_stride, x += x_stride)
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
  void (*dy)(const float*, int64_t, const float*, int64_t, int64_t, int64_t, double, double*, double*);
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

// Σ dy[i] and Σ dy[i]·(x[i] - mean) over one channel, fed a run of its blocks at a time (the whole channel
// at once, or block after block: the same association either way, since the lanes and the tails each add
// up in block order).
struct DySums {
  double ls[kLanes] = {}, ld[kLanes] = {}, s = 0.0, d = 0.0;

  // blocks b < blocks of n values, of dy at b·dy_stride and of x at b·x_stride
  void add(const BnKernels& k, const float* dy, int64_t dy_stride, const float* x, int64_t x_stride,
           int64_t blocks, int64_t n, double mean) {
    const int64_t n16 = n / kLanes * kLanes;
    k.dy(dy, dy_stride, x, x_stride, blocks, n16, mean, ls, ld);
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t i = n16; i < n; ++i) {
        const float g = dy[b * dy_stride + i];
        s += g;
        d += g * (x[b * x_stride + i] - mean);
      }
  }
  // (Σ dy, Σ dy·(x - mean)): the tails' sums, then the sixteen lanes added to them
  std::pair<double, double> sums() const {
    double sdy = s, dot = d;
    for (int j = 0; j < kLanes; ++j) {
      sdy += ls[j];
      dot += ld[j];
    }
    return {sdy, dot};
  }
};

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

// The forward's argument checks; the dimensions of x.
Dims check_forward(const carray<float>& x, const carray<float>& gamma, const carray<float>& beta,
                   const carray<float>& running_mean, const carray<float>& running_var, bool training) {
  const Dims d = dims_of(x, "x");
  check_channels(gamma, d.C, "gamma");
  check_channels(beta, d.C, "beta");
  check_channels(running_mean, d.C, "running_mean");
  check_channels(running_var, d.C, "running_var");
  if (training && d.N * d.HW < 2)
    throw py::value_error("batchnorm2d_forward in training needs more than one value per channel (N*H*W = " +
                          std::to_string(d.N * d.HW) + ")");
  return d;
}

// Channel c's map y = (x - m)·scale + shift, and the mean and invstd it came from.
struct ChannelMap {
  float m, scale, shift, invstd;
};

// Training: mean and the biased variance Σ(x - mean)²/n from the batch, running_mean/var updated in place as
// (1-m)·old + m·new with the unbiased variance var·n/(n-1). Eval: running_mean and 1/sqrt(running_var + eps).
ChannelMap channel_map(const BnKernels& kern, const float* xp, const Dims& d, int64_t c, bool training,
                       double momentum, double eps, const float* gp, const float* bp, float* rm, float* rv) {
  const int64_t count = d.N * d.HW;
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
  return {static_cast<float>(mean), static_cast<float>(gp[c] * invstd), bp[c], static_cast<float>(invstd)};
}

// y = (x - mean)·(gamma·invstd) + beta with the statistics of channel_map; these are the returned mean and
// invstd. act: applied to each block of y as it is written (batchnorm2d_act_forward), while it is in cache;
// the same function activation_forward runs, so the same bits as the unfused pair.
py::tuple batchnorm2d_forward_act(const carray<float>& x, const carray<float>& gamma,
                                  const carray<float>& beta, carray<float> running_mean,
                                  carray<float> running_var, bool training, double momentum, double eps,
                                  Act act, float alpha) {
  const Dims d = check_forward(x, gamma, beta, running_mean, running_var, training);
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
        const ChannelMap t = channel_map(kern, xp, d, c, training, momentum, eps, gp, bp, rm, rv);
        mp[c] = t.m;
        ip[c] = t.invstd;
        for (int64_t i = 0; i < d.N; ++i) {
          const int64_t off = (i * d.C + c) * d.HW;
          kern.affine(xp + off, d.HW, t.m, t.scale, t.shift, yp + off);
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
// Channel c's dgamma and dbeta (written) and its map dy, x -> dx: dx = (dy - mdy - (x - m)·k)·a.
struct DxMap {
  float mdy, m, k, a;
};

DxMap dx_map(const DySums& sums, int64_t c, double count, bool training, const float* gp, const float* mp,
             const float* ip, float* dgp, float* dbp) {
  const double is = ip[c];
  const auto [sdy, dot] = sums.sums();
  dgp[c] = static_cast<float>(dot * is);
  dbp[c] = static_cast<float>(sdy);
  const float mdy = training ? static_cast<float>(sdy / count) : 0.0f;
  const float k = training ? static_cast<float>(dot * is * is / count) : 0.0f;
  return {mdy, mp[c], k, static_cast<float>(gp[c] * is)};
}

// One block of dx from its dy and x (n values) by the map.
void block_dx(const BnKernels& kern, const DxMap& t, bool training, const float* dy, const float* x,
              int64_t n, float* dx) {
  if (training)
    kern.dx(dy, x, n, t.mdy, t.m, t.k, t.a, dx);
  else
    for (int64_t j = 0; j < n; ++j) dx[j] = dy[j] * t.a;
}

void check_backward_stats(const Dims& d, const carray<float>& gamma, const carray<float>& mean,
                          const carray<float>& invstd) {
  check_channels(gamma, d.C, "gamma");
  check_channels(mean, d.C, "mean");
  check_channels(invstd, d.C, "invstd");
}

py::tuple batchnorm2d_backward(const carray<float>& dy, const carray<float>& x, const carray<float>& gamma,
                               const carray<float>& mean, const carray<float>& invstd, bool training) {
  const Dims d = dims_of(x, "x");
  if (dy.ndim() != 4 || dy.size() != x.size()) throw py::value_error("dy must have the shape of x");
  check_backward_stats(d, gamma, mean, invstd);
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
        DySums sums;
        sums.add(kern, dyp + c * d.HW, d.C * d.HW, xp + c * d.HW, d.C * d.HW, d.N, d.HW, mp[c]);
        const DxMap t = dx_map(sums, c, count, training, gp, mp, ip, dgp, dbp);
        for (int64_t i = 0; i < d.N; ++i) {
          const int64_t off = (i * d.C + c) * d.HW;
          block_dx(kern, t, training, dyp + off, xp + off, d.HW, dxp + off);
        }
      }
    });
  }
  return py::make_tuple(dx, dgamma, dbeta);
}

// ---- batch norm + activation + max pool ----------------------------------------------------------------
// The plan's conv -> batch norm -> activation -> max pool in training, from the batch norm on. Forward: per
// channel (split over the threads) the statistics as batchnorm2d_forward, then per image the normalised,
// activated plane in a per-thread buffer, max pooled from there: act(batch norm(x)) is never written out nor
// read back. Backward: dy through the activation's gradient at the pooled values (which argmax points at),
// then per channel its planes scattered into a buffer the thread keeps (one channel, in cache), which feeds
// the batch norm's sums and then its dx: the unfused path's dz (N,C,H,W) never goes to memory, nor act(x)
// back from it. Every step is the unfused kernels' own operations in their order (the pool's, the
// scatter's, the sums' association), so the results are theirs bit for bit.

py::tuple batchnorm2d_act_maxpool_forward(const carray<float>& x, const carray<float>& gamma,
                                          const carray<float>& beta, carray<float> running_mean,
                                          carray<float> running_var, bool training, double momentum,
                                          double eps, const std::optional<std::string>& activation,
                                          double alpha, std::array<int64_t, 2> pool_kernel,
                                          std::array<int64_t, 2> pool_stride,
                                          std::array<int64_t, 2> pool_padding,
                                          std::array<int64_t, 2> pool_dilation, bool pool_ceil_mode) {
  const Dims d = check_forward(x, gamma, beta, running_mean, running_var, training);
  const Act act = parse_act(activation);
  const float slope = static_cast<float>(alpha);
  const PoolGeom plane = pool_geom({1, 1, x.shape(2), x.shape(3)}, pool_kernel, pool_stride, pool_padding,
                                   pool_dilation, pool_ceil_mode);
  const int64_t PQ = plane.P * plane.Q;
  carray<float> y = new_array<float>({d.N, d.C, plane.P, plane.Q});
  carray<int64_t> argmax = new_array<int64_t>({d.N, d.C, plane.P, plane.Q});
  carray<float> mean_out(d.C), invstd_out(d.C);
  const float *xp = x.data(), *gp = gamma.data(), *bp = beta.data();
  float *rm = running_mean.mutable_data(), *rv = running_var.mutable_data();
  float *yp = y.mutable_data(), *mp = mean_out.mutable_data(), *ip = invstd_out.mutable_data();
  int64_t* ap = argmax.mutable_data();
  const BnKernels kern = kernels_for_simd();
  {
    py::gil_scoped_release release;
    const MaxPlanePool pool(plane);
    parallel_for(d.C, [&](int64_t begin, int64_t end) {
      std::vector<float> a(d.HW);  // one image's act(batch norm(x)) plane
      for (int64_t c = begin; c < end; ++c) {
        const ChannelMap t = channel_map(kern, xp, d, c, training, momentum, eps, gp, bp, rm, rv);
        mp[c] = t.m;
        ip[c] = t.invstd;
        for (int64_t i = 0; i < d.N; ++i) {
          kern.affine(xp + (i * d.C + c) * d.HW, d.HW, t.m, t.scale, t.shift, a.data());
          activation_inplace(act, a.data(), d.HW, slope);
          const int64_t out = (i * d.C + c) * PQ;
          pool(a.data(), yp + out, ap + out);
        }
      }
    });
  }
  return py::make_tuple(y, argmax, mean_out, invstd_out);
}

py::tuple batchnorm2d_act_maxpool_backward(const carray<float>& dy, const carray<float>& y,
                                           const carray<int64_t>& argmax, const carray<float>& x,
                                           const carray<float>& gamma, const carray<float>& mean,
                                           const carray<float>& invstd, bool training,
                                           const std::optional<std::string>& activation, double alpha) {
  const Dims d = dims_of(x, "x");
  if (dy.ndim() != 4 || dy.shape(0) != d.N || dy.shape(1) != d.C)
    throw py::value_error("dy must be (N,C,P,Q) with the N and C of x");
  if (y.ndim() != 4 || y.size() != dy.size()) throw py::value_error("y must have the shape of dy");
  if (argmax.ndim() != 4 || argmax.size() != dy.size())
    throw py::value_error("argmax must have the shape of dy");
  check_backward_stats(d, gamma, mean, invstd);
  const Act act = parse_act(activation);
  const float slope = static_cast<float>(alpha);
  const int64_t PQ = dy.shape(2) * dy.shape(3);
  const double count = static_cast<double>(d.N * d.HW);
  carray<float> dx = new_array<float>({x.shape(0), x.shape(1), x.shape(2), x.shape(3)});
  carray<float> dgamma(d.C), dbeta(d.C);
  const float *dyp = dy.data(), *yp = y.data(), *xp = x.data(), *gp = gamma.data(), *mp = mean.data(),
              *ip = invstd.data();
  const int64_t* ap = argmax.data();
  float *dxp = dx.mutable_data(), *dgp = dgamma.mutable_data(), *dbp = dbeta.mutable_data();
  const BnKernels kern = kernels_for_simd();
  carray<float> g = new_array<float>({dy.shape(0), dy.shape(1), dy.shape(2), dy.shape(3)});
  std::atomic<bool> bad{false};
  {
    py::gil_scoped_release release;
    // g = activation_backward(dy, y) for the whole batch at once (one long vector pass)
    float* gv = g.mutable_data();
    parallel_for(d.N * d.C, [&](int64_t begin, int64_t end) {
      std::copy(dyp + begin * PQ, dyp + end * PQ, gv + begin * PQ);
      activation_backward_inplace(act, yp + begin * PQ, gv + begin * PQ, (end - begin) * PQ, slope);
    });
    parallel_for(d.C, [&](int64_t begin, int64_t end) {
      // one channel of maxpool2d_backward(g, argmax), its planes packed; kept by the thread (in cache, no
      // page faults from a fresh allocation per call)
      thread_local std::vector<float> dz;
      dz.resize(d.N * d.HW);
      for (int64_t c = begin; c < end; ++c) {
        // maxpool2d_backward's scatter, plane after plane
        std::fill(dz.begin(), dz.end(), 0.0f);
        bool inside = true;
        for (int64_t i = 0; i < d.N; ++i) {
          const int64_t at = (i * d.C + c) * PQ;
          inside &= maxpool_scatter_plane(gv + at, ap + at, PQ, d.HW, dz.data() + i * d.HW);
        }
        if (!inside) bad.store(true, std::memory_order_relaxed);
        DySums sums;
        sums.add(kern, dz.data(), d.HW, xp + c * d.HW, d.C * d.HW, d.N, d.HW, mp[c]);
        const DxMap t = dx_map(sums, c, count, training, gp, mp, ip, dgp, dbp);
        for (int64_t i = 0; i < d.N; ++i) {
          const int64_t off = (i * d.C + c) * d.HW;
          block_dx(kern, t, training, dz.data() + i * d.HW, xp + off, d.HW, dxp + off);
        }
      }
    });
  }
  if (bad.load()) throw py::value_error(argmax_error(d.HW, {d.N, d.C, x.shape(2), x.shape(3)}, "x"));
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
  m.def("batchnorm2d_act_maxpool_forward", &batchnorm2d_act_maxpool_forward, py::arg("x"), py::arg("gamma"),
        py::arg("beta"), py::arg("running_mean").noconvert(), py::arg("running_var").noconvert(),
        py::kw_only(), py::arg("training"), py::arg("momentum"), py::arg("eps"),
        py::arg("activation") = py::none(), py::arg("alpha") = 0.01, py::arg("pool_kernel"),
        py::arg("pool_stride"), py::arg("pool_padding"), py::arg("pool_dilation"), py::arg("pool_ceil_mode"),
        "batchnorm2d_act_forward then max pooling, one pass per plane -> (y, argmax, mean, invstd).");
  m.def("batchnorm2d_act_maxpool_backward", &batchnorm2d_act_maxpool_backward, py::arg("dy"), py::arg("y"),
        py::arg("argmax"), py::arg("x"), py::arg("gamma"), py::arg("mean"), py::arg("invstd"), py::kw_only(),
        py::arg("training"), py::arg("activation") = py::none(), py::arg("alpha") = 0.01,
        "The gradients of batchnorm2d_act_maxpool_forward -> (dx, dgamma, dbeta).");
  m.def("batchnorm2d_backward", &batchnorm2d_backward, py::arg("dy"), py::arg("x"), py::arg("gamma"),
        py::arg("mean"), py::arg("invstd"), py::kw_only(), py::arg("training"),
        "dy, x (N,C,H,W), gamma, mean, invstd (C,) -> (dx, dgamma (C,), dbeta (C,)).");
}

}  // namespace cnnkern
