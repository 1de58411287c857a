// Elementwise activations on any shape, treated as a flat array of n float32 values.
//   activation_forward:  x (n) -> y (n)           kind: relu, leaky_relu, sigmoid, tanh
//   activation_backward: dy (n), y (n) -> dx (n)  from the OUTPUT y, as PyTorch does:
//     relu: y <= 0 ? 0 : dy (a NaN y passes dy, as PyTorch's threshold_backward)   leaky_relu: y > 0 ? dy :
//     alpha*dy   sigmoid: dy*(1-y)*y   tanh: dy*(1-y*y)
//   elu_forward:         x (n) -> y (n)           x > 0 ? x : alpha*(e^x - 1) (PyTorch's F.elu)
//   elu_backward:        dy (n), x (n) -> dx (n)  x > 0 ? dy : dy*alpha*e^x, from the INPUT x, as PyTorch
// relu keeps NaN (x < 0 ? 0 : x); the comparisons select rather than multiply, so an infinite dy next to
// a zero slope gives 0, not NaN. The portable sigmoid and tanh call the C library's expf/tanhf; the AVX2
// versions (activation_avx2.cpp) use a vector e^x of the same accuracy (about 2 ulp) and otherwise perform
// the same IEEE operations as the loops here. Work is split into contiguous chunks over the pool; small
// arrays stay on the calling thread.
#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>

#include "kernels/activation.h"
#include "runtime/alloc.h"
#include "runtime/bindings.h"
#include "runtime/common.h"

namespace cnnkern {

#ifdef CNNKERN_X86
namespace avx2 {  // activation_avx2.cpp
void relu_forward(const float* x, float* y, int64_t n, float alpha);
void leaky_relu_forward(const float* x, float* y, int64_t n, float alpha);
void relu_backward(const float* dy, const float* y, float* dx, int64_t n, float alpha);
void leaky_relu_backward(const float* dy, const float* y, float* dx, int64_t n, float alpha);
void sigmoid_forward(const float* x, float* y, int64_t n, float alpha);
void tanh_forward(const float* x, float* y, int64_t n, float alpha);
void sigmoid_backward(const float* dy, const float* y, float* dx, int64_t n, float alpha);
void tanh_backward(const float* dy, const float* y, float* dx, int64_t n, float alpha);
void elu_forward(const float* x, float* y, int64_t n, float alpha);
void elu_backward(const float* dy, const float* x, float* dx, int64_t n, float alpha);
}  // namespace avx2
#endif

namespace {

using ForwardFn = void (*)(const float*, float*, int64_t, float);
using BackwardFn = void (*)(const float*, const float*, float*, int64_t, float);

enum class Kind { relu, leaky_relu, sigmoid, tanh };

Kind parse_kind(const std::string& kind) {
  if (kind == "relu") return Kind::relu;
  if (kind == "leaky_relu") return Kind::leaky_relu;
  if (kind == "sigmoid") return Kind::sigmoid;
  if (kind == "tanh") return Kind::tanh;
  throw py::value_error("kind must be 'relu', 'leaky_relu', 'sigmoid' or 'tanh', got '" + kind + "'");
}

void relu_forward(const float* x, float* y, int64_t n, float) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}
void leaky_relu_forward(const float* x, float* y, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : x[i] * alpha;
}
// With e = e^-|x| (never overflows, so tiny results keep their subnormal value):
// x >= 0 ? 1/(1+e) : e/(1+e). NaN stays NaN.
void sigmoid_forward(const float* x, float* y, int64_t n, float) {
  for (int64_t i = 0; i < n; ++i) {
    const float e = std::exp(-std::fabs(x[i]));
    y[i] = (x[i] < 0.0f ? e : 1.0f) / (1.0f + e);
  }
}
void tanh_forward(const float* x, float* y, int64_t n, float) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}

void relu_backward(const float* dy, const float* y, float* dx, int64_t n, float) {
  for (int64_t i = 0; i < n; ++i) dx[i] = y[i] <= 0.0f ? 0.0f : dy[i];
}
void leaky_relu_backward(const float* dy, const float* y, float* dx, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > 0.0f ? dy[i] : dy[i] * alpha;
}
void sigmoid_backward(const float* dy, const float* y, float* dx, int64_t n, float) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (1.0f - y[i]) * y[i];
}
void tanh_backward(const float* dy, const float* y, float* dx, int64_t n, float) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

// ELU: expm1 keeps the accuracy near 0; a NaN x fails x > 0 and gives NaN in both (PyTorch's vector loops)
void elu_forward(const float* x, float* y, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : alpha * std::expm1(x[i]);
}
void elu_backward(const float* dy, const float* x, float* dx, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > 0.0f ? dy[i] : dy[i] * alpha * std::exp(x[i]);
}

struct Kernels {
  ForwardFn forward;
  BackwardFn backward;
};

// Indexed by Kind.
const Kernels kScalar[] = {{relu_forward, relu_backward},
                           {leaky_relu_forward, leaky_relu_backward},
                           {sigmoid_forward, sigmoid_backward},
                           {tanh_forward, tanh_backward}};
#ifdef CNNKERN_X86
const Kernels kAvx2[] = {{avx2::relu_forward, avx2::relu_backward},
                         {avx2::leaky_relu_forward, avx2::leaky_relu_backward},
                         {avx2::sigmoid_forward, avx2::sigmoid_backward},
                         {avx2::tanh_forward, avx2::tanh_backward}};
#endif

// The kernels of the SIMD path in use (the AVX-512 path runs the AVX2 ones: these loops are memory-bound).
Kernels kernels_for(Kind kind) {
#ifdef CNNKERN_X86
  if (simd_level() != Simd::scalar) return kAvx2[static_cast<int>(kind)];
#endif
  return kScalar[static_cast<int>(kind)];
}

// ELU's pair on the SIMD path in use (AVX-512 runs the AVX2 one, as above).
Kernels elu_kernels() {
#ifdef CNNKERN_X86
  if (simd_level() != Simd::scalar) return {avx2::elu_forward, avx2::elu_backward};
#endif
  return {elu_forward, elu_backward};
}

carray<float> like(const carray<float>& a) {
  return new_array<float>(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
}

// y = fn(x) over the pool, in contiguous chunks
carray<float> map_forward(ForwardFn fn, const carray<float>& x, double alpha) {
  carray<float> y = like(x);
  const float* xp = x.data();
  float* yp = y.mutable_data();
  const float a = static_cast<float>(alpha);
  {
    py::gil_scoped_release release;
    run_elementwise(x.size(), [&](int64_t b, int64_t e) { fn(xp + b, yp + b, e - b, a); });
  }
  return y;
}

// dx = fn(dy, y) over the pool; y is the output, or the input for ELU
carray<float> map_backward(BackwardFn fn, const carray<float>& dy, const carray<float>& y, double alpha) {
  if (dy.size() != y.size()) throw py::value_error("dy and y must have the same size");
  carray<float> dx = like(dy);
  const float *dyp = dy.data(), *ypp = y.data();
  float* dxp = dx.mutable_data();
  const float a = static_cast<float>(alpha);
  {
    py::gil_scoped_release release;
    run_elementwise(dy.size(), [&](int64_t b, int64_t e) { fn(dyp + b, ypp + b, dxp + b, e - b, a); });
  }
  return dx;
}

carray<float> activation_forward(const carray<float>& x, const std::string& kind, double alpha) {
  return map_forward(kernels_for(parse_kind(kind)).forward, x, alpha);
}

carray<float> activation_backward(const carray<float>& dy, const carray<float>& y, const std::string& kind,
                                  double alpha) {
  return map_backward(kernels_for(parse_kind(kind)).backward, dy, y, alpha);
}

carray<float> elu_forward_array(const carray<float>& x, double alpha) {
  return map_forward(elu_kernels().forward, x, alpha);
}

carray<float> elu_backward_array(const carray<float>& dy, const carray<float>& x, double alpha) {
  return map_backward(elu_kernels().backward, dy, x, alpha);
}

}  // namespace

Act parse_act(const std::optional<std::string>& kind) {
  if (!kind) return Act::none;
  if (*kind == "relu") return Act::relu;
  if (*kind == "leaky_relu") return Act::leaky_relu;
  if (*kind == "sigmoid") return Act::sigmoid;
  if (*kind == "tanh") return Act::tanh;
  throw std::invalid_argument("activation must be None, 'relu', 'leaky_relu', 'sigmoid' or 'tanh', got '" +
                              *kind + "'");
}

// The elementwise loops read x[i] before writing y[i], so x == y (in place) is safe.
void activation_inplace(Act act, float* y, int64_t n, float alpha) {
  if (act == Act::none || n <= 0) return;
  const Kind kind = act == Act::relu         ? Kind::relu
                    : act == Act::leaky_relu ? Kind::leaky_relu
                    : act == Act::sigmoid    ? Kind::sigmoid
                                             : Kind::tanh;
  kernels_for(kind).forward(y, y, n, alpha);
}

// The backward loops read dy[i] and y[i] before writing dx[i], so dy == dx (in place) is safe.
void activation_backward_inplace(Act act, const float* y, float* d, int64_t n, float alpha) {
  if (act == Act::none || n <= 0) return;
  const Kind kind = act == Act::relu         ? Kind::relu
                    : act == Act::leaky_relu ? Kind::leaky_relu
                    : act == Act::sigmoid    ? Kind::sigmoid
                                             : Kind::tanh;
  kernels_for(kind).backward(d, y, d, n, alpha);
}

void bind_activation(py::module_& m) {
  m.def("activation_forward", &activation_forward, py::arg("x"), py::arg("kind"), py::kw_only(),
        py::arg("alpha"), "x (any shape) -> y = act(x); kind: 'relu', 'leaky_relu', 'sigmoid', 'tanh'.");
  m.def("activation_backward", &activation_backward, py::arg("dy"), py::arg("y"), py::arg("kind"),
        py::kw_only(), py::arg("alpha"), "dy, y (the forward OUTPUT) -> dx.");
  m.def("elu_forward", &elu_forward_array, py::arg("x"), py::kw_only(), py::arg("alpha"),
        "x (any shape) -> y = x > 0 ? x : alpha*(e^x - 1).");
  m.def("elu_backward", &elu_backward_array, py::arg("dy"), py::arg("x"), py::kw_only(), py::arg("alpha"),
        "dy, x (the forward INPUT) -> dx.");
}

}  // namespace cnnkern
