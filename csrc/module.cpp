// cnnkern._cpp: the C++ backend's Python module. Each kernel family binds its own functions
// (bind_conv in conv.cpp, ...); this file binds the run-time settings.
#include <pybind11/pybind11.h>

#include "alloc.h"
#include "bindings.h"
#include "common.h"

namespace py = pybind11;

PYBIND11_MODULE(_cpp, m) {
  m.doc() = "cnnkern C++ SIMD backend";
  cnnkern::simd_level();  // parse CNNKERN_SIMD now, so a bad value fails the import with its message
  m.def("simd", [] { return std::string(cnnkern::simd_name(cnnkern::simd_level())); },
        "The SIMD path in use: 'scalar', 'avx2' or 'avx512'.");
  m.def("set_simd", [](const std::string& s) {
    if (s == "scalar") cnnkern::set_simd_level(cnnkern::Simd::scalar);
    else if (s == "avx2") cnnkern::set_simd_level(cnnkern::Simd::avx2);
    else if (s == "avx512") cnnkern::set_simd_level(cnnkern::Simd::avx512);
    else throw py::value_error("simd must be 'scalar', 'avx2' or 'avx512', got '" + s + "'");
  });
  m.def("supported_simd", [] {
    py::list out;
    for (auto l : {cnnkern::Simd::scalar, cnnkern::Simd::avx2, cnnkern::Simd::avx512})
      if (cnnkern::cpu_has(l)) out.append(cnnkern::simd_name(l));
    return out;
  });
  m.def("num_threads", &cnnkern::num_threads);
  m.def("output_cache", &cnnkern::cache_idle_bytes, py::arg("release") = false,
        "Bytes of idle output blocks the extension keeps for reuse (alloc.h); release=True frees them.");
  m.def("set_num_threads", &cnnkern::set_num_threads);
  cnnkern::bind_conv(m);
  cnnkern::bind_conv_pool(m);
  cnnkern::bind_dense(m);
  cnnkern::bind_pool(m);
  cnnkern::bind_batchnorm(m);
  cnnkern::bind_activation(m);
  cnnkern::bind_loss(m);
  cnnkern::bind_optim(m);
}
