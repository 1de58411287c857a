// activation.cu: elementwise activations, any shape, flattened to `total` elements.
//
//   activation_forward   x -> y = f(x)
//   activation_backward  dy, y -> dx = dy * f'(x), computed from the output y as PyTorch does
//
//   elu_forward          x -> y = x > 0 ? x : alpha * (e^x - 1)
//   elu_backward         dy, x -> dx = x > 0 ? dy : dy * alpha * e^x, from the INPUT x (PyTorch's F.elu)
//
// kind is an ACT_* code from common.cuh (relu, leaky_relu with slope alpha, sigmoid, tanh); the formulas,
// including NaN handling, are activate() / activate_grad() there, shared with the fused epilogues.
#include "common.cuh"

extern "C" __global__ void activation_forward(const float* __restrict__ x, float* __restrict__ y, i64 total,
                                              i64 kind, float alpha) {
  GRID_STRIDE_LOOP(e, total) { y[e] = activate(x[e], (int)kind, alpha); }
}

extern "C" __global__ void activation_backward(const float* __restrict__ dy, const float* __restrict__ y,
                                               float* __restrict__ dx, i64 total, i64 kind, float alpha) {
  GRID_STRIDE_LOOP(e, total) { dx[e] = activate_grad(dy[e], y[e], (int)kind, alpha); }
}

// ELU: launched by the generic elementwise launcher (cuda/launch.py): the arrays, the output, total, alpha.
extern "C" __global__ void elu_forward(const float* __restrict__ x, float* __restrict__ y, i64 total,
                                       float alpha) {
  GRID_STRIDE_LOOP(e, total) {
    const float v = x[e];
    y[e] = v > 0.0f ? v : alpha * expm1f(v);
  }
}

extern "C" __global__ void elu_backward(const float* __restrict__ dy, const float* __restrict__ x,
                                        float* __restrict__ dx, i64 total, float alpha) {
  GRID_STRIDE_LOOP(e, total) {
    const float v = x[e];
    dx[e] = v > 0.0f ? dy[e] : dy[e] * alpha * expf(v);
  }
}
