// Optimizer steps, in place on float32 arrays of any shape treated as flat (PyTorch's SGD, Adam / AdamW and
// RMSprop).
//   sgd_update:  param, grad, velocity | None (n) -> param (and velocity) updated
//   adam_update: param, grad, m, v (n), step t >= 1 -> param, m, v updated
//   adam_update_multi: lists params, grads, ms, vs (n_i each) -> adam_update on each, one parallel pass
//   rmsprop_update: param, grad, square_avg, momentum_buffer | None, grad_avg | None (n) -> all but grad
// SGD:  g = grad + wd·param (only if wd != 0, as PyTorch, so an infinite param with wd = 0 stays finite);
//       with momentum: v = momentum·v + g, g = nesterov ? g + momentum·v : v; param -= lr·g.
// Adam: g as above; m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g·g;
//       param -= step_size · m / (sqrt(v)/c2 + eps), where (torch)  step_size = lr/(1-β1^t), c2 =
//       sqrt(1-β2^t)
//                                                    and (keras)  step_size = lr·sqrt(1-β2^t)/(1-β1^t), c2 =
//                                                    1
//       (Keras adds eps to sqrt(v) before the bias correction). AdamW (decoupled_weight_decay): param *=
//       1-lr·wd first and g = grad. Bias corrections are computed in double, the
//       per-element arithmetic in float. The AVX2 versions (optim_avx2.cpp) do the same operations in the
//       same order.
// RMSprop: g as SGD's; s = ρ·s + (1-ρ)·g·g; centered: a = ρ·a + (1-ρ)·g, d = sqrt(s - a·a) + eps, else
//       d = sqrt(s) + eps; with momentum: b = μ·b + g/d, param -= lr·b, else param -= lr·(g/d).
// Arrays are split into contiguous chunks over the pool; small ones stay on the calling thread.
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "runtime/bindings.h"
#include "runtime/common.h"

namespace cnnkern {

#ifdef CNNKERN_X86
namespace avx2 {  // optim_avx2.cpp
void sgd(float* param, const float* grad, float* velocity, int64_t n, float lr, float momentum, bool nesterov,
         float weight_decay);
void adam(float* param, const float* grad, float* m, float* v, int64_t n, float beta1, float omb1,
          float beta2, float omb2, float weight_decay, float step_size, float c2, float eps, float decay);
void rmsprop(float* param, const float* grad, float* sq, float* buf, float* gavg, int64_t n, float lr,
             float rho, float omr, float eps, float weight_decay, float momentum);
}  // namespace avx2
#endif

namespace {

// velocity may be null (no momentum).
void sgd(float* param, const float* grad, float* velocity, int64_t n, float lr, float momentum, bool nesterov,
         float weight_decay) {
  for (int64_t i = 0; i < n; ++i) {
    float g = grad[i];
    if (weight_decay != 0.0f) g = g + weight_decay * param[i];
    if (velocity) {
      const float v = momentum * velocity[i] + g;
      velocity[i] = v;
      g = nesterov ? g + momentum * v : v;
    }
    param[i] = param[i] - lr * g;
  }
}

// omb1, omb2: 1-β1 and 1-β2 rounded from double; decay: AdamW's 1-lr·wd (weight_decay is then 0), else 1.
void adam(float* param, const float* grad, float* m, float* v, int64_t n, float beta1, float omb1,
          float beta2, float omb2, float weight_decay, float step_size, float c2, float eps, float decay) {
  for (int64_t i = 0; i < n; ++i) {
    if (decay != 1.0f) param[i] = param[i] * decay;
    float g = grad[i];
    if (weight_decay != 0.0f) g = g + weight_decay * param[i];
    const float mi = beta1 * m[i] + omb1 * g;
    const float vi = beta2 * v[i] + omb2 * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] - step_size * (mi / (std::sqrt(vi) / c2 + eps));
  }
}

// buf (momentum) and gavg (centered) may be null; omr: 1-ρ rounded from double.
void rmsprop(float* param, const float* grad, float* sq, float* buf, float* gavg, int64_t n, float lr,
             float rho, float omr, float eps, float weight_decay, float momentum) {
  for (int64_t i = 0; i < n; ++i) {
    float g = grad[i];
    if (weight_decay != 0.0f) g = g + weight_decay * param[i];
    const float s = rho * sq[i] + omr * g * g;
    sq[i] = s;
    float d;
    if (gavg) {
      const float a = rho * gavg[i] + omr * g;
      gavg[i] = a;
      d = std::sqrt(s - a * a) + eps;
    } else {
      d = std::sqrt(s) + eps;
    }
    if (buf) {
      const float b = momentum * buf[i] + g / d;
      buf[i] = b;
      param[i] = param[i] - lr * b;
    } else {
      param[i] = param[i] - lr * (g / d);
    }
  }
}

bool vectorised() {
#ifdef CNNKERN_X86
  return simd_level() != Simd::scalar;  // the AVX-512 path runs the AVX2 kernels (memory-bound loops)
#else
  return false;
#endif
}

void check_same(const carray<float>& param, const carray<float>& other, const char* name) {
  if (other.size() != param.size())
    throw py::value_error(std::string(name) + " must have the size of param (" +
                          std::to_string(param.size()) + "), got " + std::to_string(other.size()));
}

void sgd_update(carray<float> param, const carray<float>& grad, std::optional<carray<float>> velocity,
                double lr, double momentum, bool nesterov, double weight_decay) {
  check_same(param, grad, "grad");
  if ((momentum != 0.0) != velocity.has_value())
    throw py::value_error("velocity must be None exactly when momentum == 0");
  if (velocity) check_same(param, *velocity, "velocity");
  const float flr = static_cast<float>(lr), fmom = static_cast<float>(momentum),
              fwd = static_cast<float>(weight_decay);
  float* pp = param.mutable_data();
  const float* gp = grad.data();
  float* vp = velocity ? velocity->mutable_data() : nullptr;
  py::gil_scoped_release release;
#ifdef CNNKERN_X86
  const auto fn = vectorised() ? avx2::sgd : sgd;
#else
  const auto fn = sgd;
#endif
  run_elementwise(param.size(), [&](int64_t b, int64_t e) {
    fn(pp + b, gp + b, vp ? vp + b : nullptr, e - b, flr, fmom, nesterov, fwd);
  });
}

// One Adam step's per-element coefficients, from the hyperparameters (bias corrections in double).
struct AdamStep {
  float beta1, omb1, beta2, omb2, weight_decay, step_size, c2, eps, decay;
};

AdamStep adam_step(int64_t step, double lr, double beta1, double beta2, double eps, double weight_decay,
                   const std::string& eps_mode, bool decoupled) {
  if (step < 1) throw py::value_error("step must be >= 1, got " + std::to_string(step));
  if (eps_mode != "torch" && eps_mode != "keras")
    throw py::value_error("eps_mode must be 'torch' or 'keras', got '" + eps_mode + "'");
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  const bool torch = eps_mode == "torch";
  return {static_cast<float>(beta1),
          static_cast<float>(1.0 - beta1),
          static_cast<float>(beta2),
          static_cast<float>(1.0 - beta2),
          static_cast<float>(decoupled ? 0.0 : weight_decay),
          static_cast<float>(torch ? lr / bc1 : lr * std::sqrt(bc2) / bc1),
          static_cast<float>(torch ? std::sqrt(bc2) : 1.0),
          static_cast<float>(eps),
          static_cast<float>(decoupled ? 1.0 - lr * weight_decay : 1.0)};
}

// Runs the SIMD path's Adam kernel on n elements.
void adam_run(const AdamStep& s, float* param, const float* grad, float* m, float* v, int64_t n) {
#ifdef CNNKERN_X86
  const auto fn = vectorised() ? avx2::adam : adam;
#else
  const auto fn = adam;
#endif
  fn(param, grad, m, v, n, s.beta1, s.omb1, s.beta2, s.omb2, s.weight_decay, s.step_size, s.c2, s.eps,
     s.decay);
}

void adam_update(carray<float> param, const carray<float>& grad, carray<float> m, carray<float> v,
                 int64_t step, double lr, double beta1, double beta2, double eps, double weight_decay,
                 const std::string& eps_mode, bool decoupled_weight_decay) {
  check_same(param, grad, "grad");
  check_same(param, m, "m");
  check_same(param, v, "v");
  const AdamStep s = adam_step(step, lr, beta1, beta2, eps, weight_decay, eps_mode, decoupled_weight_decay);
  float *pp = param.mutable_data(), *mp = m.mutable_data(), *vp = v.mutable_data();
  const float* gp = grad.data();
  py::gil_scoped_release release;
  run_elementwise(param.size(),
                  [&](int64_t b, int64_t e) { adam_run(s, pp + b, gp + b, mp + b, vp + b, e - b); });
}

// adam_update over lists of parameters (one step t for all): the elements of every tensor form one joint
// range [0, Σ sizes) that is split over the pool, so small tensors (biases) share a chunk instead of each
// paying a call and a pool dispatch. Tensor t owns [start[t], start[t+1]) of the joint range.
void adam_update_multi(std::vector<carray<float>> params, const std::vector<carray<float>>& grads,
                       std::vector<carray<float>> ms, std::vector<carray<float>> vs, int64_t step, double lr,
                       double beta1, double beta2, double eps, double weight_decay,
                       const std::string& eps_mode, bool decoupled_weight_decay) {
  const size_t k = params.size();
  if (grads.size() != k || ms.size() != k || vs.size() != k)
    throw py::value_error("params, grads, ms and vs must be lists of the same length");
  for (size_t t = 0; t < k; ++t) {
    const std::string at = "[" + std::to_string(t) + "]";
    check_same(params[t], grads[t], ("grads" + at).c_str());
    check_same(params[t], ms[t], ("ms" + at).c_str());
    check_same(params[t], vs[t], ("vs" + at).c_str());
  }
  const AdamStep s = adam_step(step, lr, beta1, beta2, eps, weight_decay, eps_mode, decoupled_weight_decay);
  std::vector<int64_t> start(k + 1, 0);
  std::vector<float*> p(k), m(k), v(k);
  std::vector<const float*> g(k);
  for (size_t t = 0; t < k; ++t) {
    start[t + 1] = start[t] + params[t].size();
    p[t] = params[t].mutable_data();
    g[t] = grads[t].data();
    m[t] = ms[t].mutable_data();
    v[t] = vs[t].mutable_data();
  }
  py::gil_scoped_release release;
  run_elementwise(start[k], [&](int64_t b, int64_t e) {
    // the last tensor starting at or before b, then each tensor overlapping [b, e) in turn
    size_t t = static_cast<size_t>(std::upper_bound(start.begin(), start.end(), b) - start.begin()) - 1;
    for (; b < e; ++t) {
      const int64_t lo = b - start[t], hi = std::min(e, start[t + 1]) - start[t];
      if (hi > lo) adam_run(s, p[t] + lo, g[t] + lo, m[t] + lo, v[t] + lo, hi - lo);
      b = start[t] + hi;
    }
  });
}

void rmsprop_update(carray<float> param, const carray<float>& grad, carray<float> square_avg,
                    std::optional<carray<float>> momentum_buffer, std::optional<carray<float>> grad_avg,
                    double lr, double rho, double eps, double weight_decay, double momentum, bool centered) {
  check_same(param, grad, "grad");
  check_same(param, square_avg, "square_avg");
  if ((momentum != 0.0) != momentum_buffer.has_value())
    throw py::value_error("momentum_buffer must be None exactly when momentum == 0");
  if (centered != grad_avg.has_value())
    throw py::value_error("grad_avg must be None exactly when not centered");
  if (momentum_buffer) check_same(param, *momentum_buffer, "momentum_buffer");
  if (grad_avg) check_same(param, *grad_avg, "grad_avg");
  const float flr = static_cast<float>(lr), frho = static_cast<float>(rho),
              fomr = static_cast<float>(1.0 - rho), feps = static_cast<float>(eps),
              fwd = static_cast<float>(weight_decay), fmom = static_cast<float>(momentum);
  float *pp = param.mutable_data(), *sp = square_avg.mutable_data();
  float* bp = momentum_buffer ? momentum_buffer->mutable_data() : nullptr;
  float* ap = grad_avg ? grad_avg->mutable_data() : nullptr;
  const float* gp = grad.data();
  py::gil_scoped_release release;
#ifdef CNNKERN_X86
  const auto fn = vectorised() ? avx2::rmsprop : rmsprop;
#else
  const auto fn = rmsprop;
#endif
  run_elementwise(param.size(), [&](int64_t b, int64_t e) {
    fn(pp + b, gp + b, sp + b, bp ? bp + b : nullptr, ap ? ap + b : nullptr, e - b, flr, frho, fomr, feps,
       fwd, fmom);
  });
}

}  // namespace

void bind_optim(py::module_& m) {
  // In-place arrays are noconvert: a wrong dtype or a non-contiguous array is a TypeError, never a
  // silently updated copy.
  m.def("sgd_update", &sgd_update, py::arg("param").noconvert(), py::arg("grad"),
        py::arg("velocity").noconvert().none(true), py::kw_only(), py::arg("lr"), py::arg("momentum"),
        py::arg("nesterov"), py::arg("weight_decay"),
        "In place: param -= lr*g (g with weight decay, momentum and Nesterov as PyTorch's SGD).");
  m.def("adam_update", &adam_update, py::arg("param").noconvert(), py::arg("grad"), py::arg("m").noconvert(),
        py::arg("v").noconvert(), py::kw_only(), py::arg("step"), py::arg("lr"), py::arg("beta1"),
        py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("eps_mode"),
        py::arg("decoupled_weight_decay") = false,
        "In place on param, m, v: one Adam step t = step; eps_mode 'torch' or 'keras'; AdamW if decoupled.");
  m.def("adam_update_multi", &adam_update_multi, py::arg("params").noconvert(), py::arg("grads"),
        py::arg("ms").noconvert(), py::arg("vs").noconvert(), py::kw_only(), py::arg("step"), py::arg("lr"),
        py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("eps_mode"),
        py::arg("decoupled_weight_decay") = false,
        "adam_update on every (params[i], grads[i], ms[i], vs[i]) with one step t, in one parallel pass.");
  m.def("rmsprop_update", &rmsprop_update, py::arg("param").noconvert(), py::arg("grad"),
        py::arg("square_avg").noconvert(), py::arg("momentum_buffer").noconvert().none(true),
        py::arg("grad_avg").noconvert().none(true), py::kw_only(), py::arg("lr"), py::arg("rho"),
        py::arg("eps"), py::arg("weight_decay"), py::arg("momentum"), py::arg("centered"),
        "In place: one step of PyTorch's RMSprop (rho is its alpha); buffers None when momentum 0 / not "
        "centered.");
}

}  // namespace cnnkern
