// cnnkern._cpp: the C++ backend's Python module. Each kernel family binds its own functions
// (bind_conv in conv.cpp, ...); this file binds the run-time settings.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "runtime/alloc.h"
#include "runtime/bindings.h"
#include "runtime/common.h"

namespace py = pybind11;

PYBIND11_MODULE(_cpp, m) {
  m.doc() = "cnnkern C++ SIMD backend";
  cnnkern::simd_level();  // parse CNNKERN_SIMD now, so a bad value fails the import with its message
  cnnkern::init_threads_from_env();  // and CNNKERN_NUM_THREADS (ValueError), rather than abort at first use
  m.def(
      "simd", [] { return std::string(cnnkern::simd_name(cnnkern::simd_level())); },
      "The SIMD path in use: 'scalar', 'avx2' or 'avx512'.");
  m.def("set_simd", [](const std::string& s) {
    if (s == "scalar")
      cnnkern::set_simd_level(cnnkern::Simd::scalar);
    else if (s == "avx2")
      cnnkern::set_simd_level(cnnkern::Simd::avx2);
    else if (s == "avx512")
      cnnkern::set_simd_level(cnnkern::Simd::avx512);
    else
      throw py::value_error("simd must be 'scalar', 'avx2' or 'avx512', got '" + s + "'");
  });
  m.def("supported_simd", [] {
    py::list out;
    for (auto l : {cnnkern::Simd::scalar, cnnkern::Simd::avx2, cnnkern::Simd::avx512})
      if (cnnkern::cpu_has(l)) out.append(cnnkern::simd_name(l));
    return out;
  });
  m.def("num_threads", &cnnkern::num_threads,
        "Threads of the kernel pool, the caller included (CNNKERN_NUM_THREADS, default: the usable CPUs).");
  m.def("max_threads", &cnnkern::max_threads,
        "The largest pool size set_num_threads accepts: 4 x usable_cpus().");
  m.def("threads_pinned", &cnnkern::threads_pinned,
        "Whether the pool's workers are pinned one per CPU of the affinity mask (on unless "
        "CNNKERN_PIN_THREADS=0 "
        "or the pool has more threads than CPUs).");
  m.def("usable_cpus", &cnnkern::usable_cpus, "CPUs in this process's affinity mask.");
  m.def("env_threads", &cnnkern::env_threads, "CNNKERN_NUM_THREADS as parsed at import; 0 if unset.");
  m.def("output_cache", &cnnkern::cache_idle_bytes, py::arg("release") = false,
        "Bytes of idle output blocks the extension keeps for reuse (alloc.h); release=True frees them.");
  // Takes any object, so that a bool, a float or an integer beyond int64 gets this message rather than
  // pybind11's "incompatible function arguments".
  m.def(
      "set_num_threads",
      [](py::handle n) {
        if (!PyLong_Check(n.ptr()) || PyBool_Check(n.ptr()))
          throw py::type_error("n must be an int, got " +
                               std::string(py::str(py::type::of(n).attr("__name__"))));
        int overflow = 0;
        const long long v = PyLong_AsLongLongAndOverflow(n.ptr(), &overflow);
        const std::string err = cnnkern::check_thread_count(overflow ? (overflow > 0 ? INT64_MAX : -1) : v,
                                                            "n", overflow ? std::string(py::str(n)) : "");
        if (!err.empty()) throw py::value_error(err);
        py::gil_scoped_release nogil;  // waits for a job of another thread to end
        cnnkern::set_num_threads(static_cast<int>(v));
      },
      py::arg("n"),
      "Resize the kernel pool to n threads, 1 <= n <= max_threads(); RuntimeError (the size unchanged) if a "
      "thread cannot start.");
  cnnkern::bind_conv(m);
  cnnkern::bind_conv_pool(m);
  cnnkern::bind_conv_algo(m);
  cnnkern::bind_dense(m);
  cnnkern::bind_pool(m);
  cnnkern::bind_batchnorm(m);
  cnnkern::bind_activation(m);
  cnnkern::bind_loss(m);
  cnnkern::bind_optim(m);
  cnnkern::bind_augment(m);
  cnnkern::bind_quant(m);
}
