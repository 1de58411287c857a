// Activations and their gradients applied in place, for the epilogues of fused kernels
// (conv2d_bias_act_forward, dense_bias_act_forward, maxpool2d_act_backward): on the calling thread, with the
// SIMD path in use and the same IEEE semantics as activation_forward / activation_backward (activation.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace cnnkern {

enum class Act { none, relu, leaky_relu, sigmoid, tanh };

// None -> Act::none; otherwise 'relu', 'leaky_relu', 'sigmoid' or 'tanh' (std::invalid_argument else).
Act parse_act(const std::optional<std::string>& kind);
// y[0:n] = act(y[0:n]); a no-op for Act::none.
void activation_inplace(Act act, float* y, int64_t n, float alpha);
// d[0:n] = act'(d[0:n]) given the activation's OUTPUT y (as activation_backward, in place on d); a no-op for
// Act::none.
void activation_backward_inplace(Act act, const float* y, float* d, int64_t n, float alpha);

}  // namespace cnnkern
