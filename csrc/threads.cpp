// The thread pool behind parallel_for: workers sleep on a condition variable between jobs, the caller
// runs a share of each job itself, and a job returns only when every chunk is done.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include <sched.h>

#include "common.h"

namespace cnnkern {
namespace {

int default_threads() {
  if (const char* env = std::getenv("CNNKERN_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n >= 1) return n;
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

class Pool {
 public:
  explicit Pool(int n) { resize(n); }
  ~Pool() { stop(); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Waits for a job in flight (another Python thread may be inside a kernel, the GIL released) before
  // replacing the workers.
  void resize(int n) {
    for (bool idle = false; !busy_.compare_exchange_weak(idle, true); idle = false) std::this_thread::yield();
    stop();
    std::lock_guard<std::mutex> g(mu_);
    quit_ = false;
    // A new worker must only see jobs posted after it starts: it begins at the current generation.
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, g0 = generation_] { loop(i, g0); });
    busy_.store(false);
  }

  // Runs task(t) for t in [0, nt) with t = 0 on the calling thread.
  void run(int nt, const std::function<void(int)>& task) {
    if (nt <= 1 || busy_.exchange(true)) {  // serial when asked, or when nested / called concurrently
      for (int t = 0; t < nt; ++t) task(t);
      return;
    }
    {
      std::lock_guard<std::mutex> g(mu_);
      task_ = &task;
      ntasks_ = nt;
      pending_ = nt - 1;
      ++generation_;
    }
    cv_.notify_all();
    task(0);
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [this] { return pending_ == 0; });
    task_ = nullptr;
    busy_.store(false);
  }

 private:
  void loop(int id, uint64_t seen) {
    for (;;) {
      const std::function<void(int)>* task;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return quit_ || generation_ != seen; });
        if (quit_) return;
        seen = generation_;
        task = task_;
        if (id >= ntasks_) continue;
      }
      (*task)(id);
      std::lock_guard<std::mutex> g(mu_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> g(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int)>* task_ = nullptr;
  int ntasks_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool quit_ = false;
  std::atomic<bool> busy_{false};
};

Pool& pool() {
  static Pool p(default_threads());
  return p;
}

}  // namespace

int num_threads() { return pool().size(); }

void set_num_threads(int n) { pool().resize(std::max(1, n)); }

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int nt = static_cast<int>(std::min<int64_t>(n, num_threads()));
  pool().run(nt, [&](int t) {
    const int64_t begin = n * t / nt, end = n * (t + 1) / nt;
    if (begin < end) fn(begin, end);
  });
}

void parallel_for_dynamic(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t chunks = (n + grain - 1) / grain;
  const int nt = static_cast<int>(std::min<int64_t>(chunks, num_threads()));
  std::atomic<int64_t> next{0};
  pool().run(nt, [&](int) {
    for (int64_t c = next.fetch_add(1); c < chunks; c = next.fetch_add(1))
      fn(c * grain, std::min(n, (c + 1) * grain));
  });
}

}  // namespace cnnkern
