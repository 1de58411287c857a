// cuda_emu.h: CPU emulation of the CUDA subset the cnnkern kernels use (tests/cuda_emulator.py drives it).
//
// Every thread of a block is a ucontext fiber; the fibers of a block run round-robin and switch only at
// barriers: __syncthreads waits for the block, __syncwarp and the warp intrinsics (__shfl_xor_sync,
// __match_any_sync) for the 32 fibers of the warp, exchanging values through a per-warp buffer. Blocks run
// one after another, so `static` storage stands in for __shared__ memory. A barrier that no fiber can pass
// (a thread exited while others wait, a divergent __syncthreads) aborts with "deadlock" instead of hanging.
// 1-D blocks of a multiple of 32 threads, as every cnnkern kernel uses.
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>
using std::isnan;

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

namespace emu {
struct Barrier {
  int count = 0, arrived = 0;
  long gen = 0;
};
struct Fiber {
  ucontext_t ctx;
  bool done = false;
  dim3 tid;
  std::vector<char> stack;
};
inline ucontext_t sched;
inline std::vector<Fiber> fibers;
inline Fiber* cur = nullptr;
inline dim3 bid, bdim, gdim;
inline Barrier block_bar;
inline std::vector<Barrier> warp_bars;
inline std::vector<uint64_t> xch;  // 32 slots per warp
inline std::function<void()>* body = nullptr;
inline long progress = 0;

inline void yield() { swapcontext(&cur->ctx, &sched); }
inline void wait(Barrier& b) {
  long g = b.gen;
  ++progress;
  if (++b.arrived == b.count) {
    b.arrived = 0;
    ++b.gen;
  } else {
    while (b.gen == g) yield();
  }
}
inline int lane() { return cur->tid.x & 31; }
inline int warp() { return cur->tid.x >> 5; }
inline void entry() {
  (*body)();
  cur->done = true;
  ++progress;
  swapcontext(&cur->ctx, &sched);
}
inline void launch(dim3 grid, dim3 block, std::function<void()> fn) {
  if (block.y != 1 || block.z != 1 || block.x % 32) {
    fprintf(stderr, "emu: 1-D blocks of 32k threads only\n");
    abort();
  }
  body = &fn;
  gdim = grid;
  bdim = block;
  fibers.assign(block.x, Fiber());
  for (auto& f : fibers) f.stack.resize(1 << 17);
  warp_bars.assign(block.x / 32, Barrier());
  xch.assign(block.x, 0);
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        bid.x = x;
        bid.y = y;
        bid.z = z;
        block_bar = Barrier();
        block_bar.count = block.x;
        for (auto& w : warp_bars) {
          w = Barrier();
          w.count = 32;
        }
        for (unsigned t = 0; t < block.x; ++t) {
          Fiber& f = fibers[t];
          f.done = false;
          f.tid.x = t;
          getcontext(&f.ctx);
          f.ctx.uc_stack.ss_sp = f.stack.data();
          f.ctx.uc_stack.ss_size = f.stack.size();
          f.ctx.uc_link = nullptr;
          makecontext(&f.ctx, entry, 0);
        }
        for (;;) {
          bool all_done = true;
          long before = progress;
          for (auto& f : fibers) {
            if (f.done) continue;
            all_done = false;
            cur = &f;
            swapcontext(&sched, &f.ctx);
          }
          if (all_done) break;
          if (progress == before) {
            fprintf(stderr, "emu: deadlock at barrier\n");
            abort();
          }
        }
      }
}
}  // namespace emu

#define threadIdx (emu::cur->tid)
#define blockIdx (emu::bid)
#define blockDim (emu::bdim)
#define gridDim (emu::gdim)
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)

#define __shared__ static

inline void __syncthreads() { emu::wait(emu::block_bar); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::wait(emu::warp_bars[emu::warp()]); }
inline float __shfl_xor_sync(unsigned, float v, int o) {
  uint64_t* x = &emu::xch[emu::warp() * 32];
  uint32_t bits;
  memcpy(&bits, &v, 4);
  x[emu::lane()] = bits;
  __syncwarp();
  bits = (uint32_t)x[emu::lane() ^ o];
  __syncwarp();
  float r;
  memcpy(&r, &bits, 4);
  return r;
}
inline unsigned __match_any_sync(unsigned, unsigned long long key) {
  uint64_t* x = &emu::xch[emu::warp() * 32];
  x[emu::lane()] = key;
  __syncwarp();
  unsigned m = 0;
  for (int l = 0; l < 32; ++l)
    if (x[l] == key) m |= 1u << l;
  __syncwarp();
  return m;
}
inline int __ffs(unsigned v) { return __builtin_ffs((int)v); }
inline float __int_as_float(int i) {
  float f;
  memcpy(&f, &i, 4);
  return f;
}
// dp4a: the four signed byte products of a and b summed into c
inline int __dp4a(int a, int b, int c) {
  for (int i = 0; i < 4; ++i) c += (int)(signed char)(a >> (8 * i)) * (int)(signed char)(b >> (8 * i));
  return c;
}
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
