// Run-time choice of the SIMD path: the CPU's features (cpuid + OS support for the wide registers),
// or CNNKERN_SIMD=scalar|avx2|avx512 to force one.
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "runtime/common.h"

namespace cnnkern {

bool cpu_has(Simd level) {
  if (level == Simd::scalar) return true;
#if defined(CNNKERN_X86) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (level == Simd::avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (level == Simd::avx512)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("fma");
#endif
  return false;
}

const char* simd_name(Simd level) {
  switch (level) {
    case Simd::avx512:
      return "avx512";
    case Simd::avx2:
      return "avx2";
    default:
      return "scalar";
  }
}

namespace {
Simd initial_level() {
  if (const char* env = std::getenv("CNNKERN_SIMD")) {
    std::string s(env);
    if (!s.empty() && s != "auto") {
      Simd want;
      if (s == "scalar")
        want = Simd::scalar;
      else if (s == "avx2")
        want = Simd::avx2;
      else if (s == "avx512")
        want = Simd::avx512;
      else
        throw std::runtime_error("CNNKERN_SIMD must be auto, scalar, avx2 or avx512, got '" + s + "'");
      if (!cpu_has(want))
        throw std::runtime_error("CNNKERN_SIMD=" + s + " but this CPU cannot run the " + s + " path");
      return want;
    }
  }
  if (cpu_has(Simd::avx512)) return Simd::avx512;
  if (cpu_has(Simd::avx2)) return Simd::avx2;
  return Simd::scalar;
}

Simd& level_ref() {
  static Simd level = initial_level();
  return level;
}
}  // namespace

Simd simd_level() { return level_ref(); }

void set_simd_level(Simd level) {
  if (!cpu_has(level))
    throw std::runtime_error(std::string("this CPU cannot run the ") + simd_name(level) + " path");
  level_ref() = level;
}

}  // namespace cnnkern
