// int64 arithmetic on sizes that come from the caller (padding, dilation, output shapes). A result that does
// not fit is signed overflow: undefined behaviour (a fatal report in the ASan + UBSan build,
// CNNKERN_DEBUG_BUILD=1), and in practice a wrapped value that slips past the checks after it
// (conv2d_forward(padding=2**62)). These raise ValueError naming the quantity instead.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/bindings.h"

namespace cnnkern {

inline int64_t checked_add(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) throw py::value_error(std::string(what) + " overflows int64");
  return r;
}

inline int64_t checked_sub(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) throw py::value_error(std::string(what) + " overflows int64");
  return r;
}

inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) throw py::value_error(std::string(what) + " overflows int64");
  return r;
}

}  // namespace cnnkern
