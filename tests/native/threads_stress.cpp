// Stress of the thread pool (csrc/runtime/threads.cpp) alone, built with a sanitizer by
// tests/test_threads.py: jobs posted from two threads while a third resizes the pool, nested jobs (run
// serially), an exception thrown in one chunk (rethrown by the caller once every chunk ran), and a refused
// size. Exit status 1 on a wrong result; the sanitizer reports races and memory errors.
#include <atomic>
#include <cstdio>
#include <stdexcept>
#include <thread>
#include <vector>
#include "runtime/common.h"
using namespace cnnkern;
int main() {
  init_threads_from_env();
  std::atomic<bool> stop{false};
  std::atomic<long> errors{0};
  auto work = [&](int seed) {
    std::vector<int> out(1000);
    for (int it = 0; !stop.load(); ++it) {
      std::fill(out.begin(), out.end(), 0);
      parallel_for(1000, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) out[i] += 1;
        parallel_for(3, [&](int64_t, int64_t) {});  // nested: serial
      });
      for (int v : out)
        if (v != 1) errors++;
      try {
        parallel_chunks(7, [&](int64_t c) {
          if (c == 3) throw std::runtime_error("x");
        });
        errors++;
      } catch (const std::runtime_error&) {
      }
      if (it > 300 + seed) break;
    }
  };
  std::thread a(work, 0), b(work, 7);
  for (int i = 0; i < 60; ++i) set_num_threads(1 + i % 4);
  a.join();
  b.join();
  try {
    set_num_threads(100000);
    errors++;
  } catch (const std::invalid_argument&) {
  }
  std::printf("errors %ld threads %d\n", errors.load(), num_threads());
  return errors.load() != 0;
}
