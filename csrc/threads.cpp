// The thread pool behind parallel_for: the caller runs a share of each job itself, and a job returns only
// when every chunk is done. Between jobs, workers (and the caller waiting for them) spin for a short while
// before sleeping on a condition variable: in a training step the next kernel follows within tens of
// microseconds, and a futex wake-up on a VM costs about as much as a small kernel.
#include <algorithm>
#include <atomic>
#include <chrono>
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

constexpr auto kSpin = std::chrono::microseconds(100);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Polls ready() for up to kSpin; true as soon as it holds, false if it still does not.
template <class Ready>
bool spin_until(Ready ready) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (int i = 1;; ++i) {
    if (ready()) return true;
    cpu_relax();
    if ((i & 63) == 0 && std::chrono::steady_clock::now() > until) return ready();
  }
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
    const uint64_t g0 = generation_.load();
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, g0] { loop(i, g0); });
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
      pending_.store(nt - 1);
      generation_.fetch_add(1);  // publishes the job to spinning workers
    }
    cv_.notify_all();  // and to sleeping ones
    task(0);
    auto done = [this] { return pending_.load() == 0; };
    if (!spin_until(done)) {
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, done);
    }
    busy_.store(false);
  }

 private:
  void loop(int id, uint64_t seen) {
    auto posted = [&] { return quit_.load() || generation_.load() != seen; };
    for (;;) {
      spin_until(posted);
      const std::function<void(int)>* task;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, posted);
        if (quit_) return;
        seen = generation_.load();
        task = task_;
        if (id >= ntasks_) continue;
      }
      (*task)(id);
      if (pending_.fetch_sub(1) == 1) {  // the last chunk: wake the caller if it went to sleep
        std::lock_guard<std::mutex> g(mu_);
        done_cv_.notify_one();
      }
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
  int ntasks_ = 0;
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> quit_{false};
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
