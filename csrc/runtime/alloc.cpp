// The block cache behind new_array (alloc.h). Each block carries a 64-byte header holding its size, so the
// capsule destructor needs only the data pointer; idle blocks wait in a multimap keyed by size and are
// reused only for a request of exactly that size (a training loop asks for the same sizes every step).
#include "runtime/alloc.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>

namespace cnnkern {
namespace {

constexpr size_t kHeader = 64;

struct Cache {
  std::mutex mu;
  std::multimap<size_t, void*> idle;  // size -> block (the header's address)
  size_t idle_bytes = 0;
};

// Never destroyed: arrays may outlive static destruction at interpreter exit.
Cache& cache() {
  static Cache* c = new Cache;
  return *c;
}

}  // namespace

void* cache_take(size_t bytes) {
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.idle.find(bytes);
    if (it != c.idle.end()) {
      void* block = it->second;
      c.idle.erase(it);
      c.idle_bytes -= bytes;
      return static_cast<char*>(block) + kHeader;
    }
  }
  void* block = std::aligned_alloc(64, (kHeader + bytes + 63) / 64 * 64);
  if (!block) throw std::bad_alloc();
  *static_cast<size_t*>(block) = bytes;
  return static_cast<char*>(block) + kHeader;
}

void cache_give(void* p) {
  void* block = static_cast<char*>(p) - kHeader;
  const size_t bytes = *static_cast<size_t*>(block);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.idle_bytes + bytes <= kCacheMaxBytes) {
      c.idle.emplace(bytes, block);
      c.idle_bytes += bytes;
      return;
    }
  }
  std::free(block);
}

size_t cache_idle_bytes(bool release) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  const size_t held = c.idle_bytes;
  if (release) {
    for (auto& kv : c.idle) std::free(kv.second);
    c.idle.clear();
    c.idle_bytes = 0;
  }
  return held;
}

}  // namespace cnnkern
