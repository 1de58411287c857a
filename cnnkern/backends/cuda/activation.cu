// activation.cu: elementwise activations, any shape, flattened to `total` elements.
//
//   activation_forward   x -> y = f(x)
//   activation_backward  dy, y -> dx = dy * f'(x), computed from the output y as PyTorch does
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
