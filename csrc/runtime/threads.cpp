// The thread pool behind parallel_for (common.h; the rules are in docs/threads.md).
//
// A job is a count of chunks; the caller and the workers claim chunks in order from a shared counter until
// none is left, and the caller returns when every chunk is done. Claiming, rather than one fixed share per
// thread, is what keeps a step fast when another process holds one of the cores: a worker that is not
// running (descheduled, or not yet woken) simply claims nothing, and the threads that run take its share,
// instead of the whole job waiting for the scheduler to give that worker its next time slice. A worker
// that wakes after the job's last chunk was claimed leaves without touching it; the next job waits (under
// the mutex) until such late workers have left before it resets the counter.
//
// Between jobs, workers (and the caller waiting for the last chunks) spin for a short while before sleeping
// on a condition variable: in a training step the next kernel follows within tens of microseconds, and a
// futex wake-up on a VM costs about as much as a small kernel.
//
// Placement: while the pool has no more threads than the process has CPUs, worker i is pinned to the i-th CPU
// of the affinity mask (the caller's thread is left alone). Unpinned, a worker woken after an idle spell is
// often placed on the waking thread's own CPU (the scheduler's wake-affine rule) and the whole job runs on
// one core until the load balancer moves it: measured on the 2-core VM, a mobile-zoo inference at 2 threads
// took 6.8 ms after 20 ms idle against 3.3 ms back to back, and 3.8 ms pinned (docs/threads.md).
// CNNKERN_PIN_THREADS=0 turns it off.
//
// Sizes: 1 <= threads <= max_threads() = kThreadsPerCpu x the CPUs in this process's affinity mask. A resize
// is all or nothing: if a worker cannot be started, the ones started are joined, the previous size is
// restored and the error is raised.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <pthread.h>
#include <sched.h>

#include "runtime/common.h"

namespace cnnkern {
namespace {

constexpr int kThreadsPerCpu = 4;        // max_threads(): more than this many per CPU only adds switching
constexpr int64_t kChunksPerThread = 8;  // parallel_for: chunks per thread, so a stalled thread holds little
constexpr auto kSpin = std::chrono::microseconds(100);

int env_threads_value = 0;  // CNNKERN_NUM_THREADS as parsed at import (0: not set)

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

// The CPUs of this process's affinity mask, in order (empty if it cannot be read).
std::vector<int> affinity_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  return cpus;
}

bool pinning_wanted() {
  const char* env = std::getenv("CNNKERN_PIN_THREADS");
  return env == nullptr || std::string(env) != "0";
}

int default_threads() { return env_threads_value > 0 ? env_threads_value : usable_cpus(); }

class Pool {
 public:
  Pool() = default;  // no workers until started: constructing the pool cannot fail
  ~Pool() { stop(); }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  int size() const { return size_.load(); }
  bool pinned() const { return pinned_.load(); }
  bool started() const { return started_.load(); }

  // Sizes the pool from CNNKERN_NUM_THREADS (else the usable CPUs) on first use; if the workers cannot be
  // started the error propagates and the next use tries again.
  void start_default() {
    Busy b(busy_);
    if (!started_.load()) {
      resize_held(default_threads());
      started_.store(true);
    }
  }

  // Waits for a job in flight (another Python thread may be inside a kernel, the GIL released) before
  // replacing the workers.
  void resize(int n) {
    Busy b(busy_);
    resize_held(n);
    started_.store(true);
  }

  // Runs task(c) once for every c in [0, nchunks); serial when there is one chunk or one thread, and when
  // nested in a job or called while another thread's job runs (the pool serves one job at a time).
  void run(int64_t nchunks, const std::function<void(int64_t)>& task) {
    if (nchunks <= 0) return;
    if (nchunks == 1 || size_.load() == 1 || busy_.exchange(true)) {
      for (int64_t c = 0; c < nchunks; ++c) task(c);
      return;
    }
    {
      std::unique_lock<std::mutex> lk(mu_);
      idle_cv_.wait(lk, [this] { return active_ == 0; });  // late workers of the previous job have left
      task_ = &task;
      nchunks_ = nchunks;
      next_.store(0);
      done_.store(0);
      error_ = nullptr;
      generation_.fetch_add(1);  // publishes the job to spinning workers
    }
    cv_.notify_all();  // and to sleeping ones
    claim(task, nchunks);
    auto all_done = [this, nchunks] { return done_.load() == nchunks; };
    if (!spin_until(all_done)) {
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, all_done);
    }
    std::exception_ptr error;
    {
      std::lock_guard<std::mutex> g(mu_);
      std::swap(error, error_);
    }
    busy_.store(false);
    if (error) std::rethrow_exception(error);
  }

 private:
  // Holds the busy flag for its scope (resize and start_default wait for a job in flight to end).
  struct Busy {
    explicit Busy(std::atomic<bool>& f) : flag(f) {
      for (bool idle = false; !flag.compare_exchange_weak(idle, true); idle = false)
        std::this_thread::yield();
    }
    ~Busy() { flag.store(false); }
    std::atomic<bool>& flag;
  };

  // All or nothing: on failure the previous size is restored (or, failing that too, the caller alone).
  void resize_held(int n) {
    const int old = size();
    stop();
    try {
      start(n);
    } catch (const std::exception& e) {
      const int started = size();
      stop();
      try {
        start(old);
      } catch (const std::exception&) {
        stop();
      }
      throw std::runtime_error("could not start thread " + std::to_string(started + 1) + " of " +
                               std::to_string(n) + " (" + e.what() + "); the pool keeps " +
                               std::to_string(size()) + " thread(s)");
    }
  }

  void start(int n) {
    std::lock_guard<std::mutex> g(mu_);
    quit_ = false;
    // A new worker must only see jobs posted after it starts: it begins at the current generation.
    const uint64_t g0 = generation_.load();
    const std::vector<int> cpus = affinity_cpus();
    const bool pin = pinning_wanted() && n > 1 && n <= static_cast<int>(cpus.size());
    bool all_pinned = pin;
    workers_.reserve(static_cast<size_t>(n - 1));
    for (int i = 1; i < n; ++i) {
      workers_.emplace_back([this, g0] { loop(g0); });
      if (pin) all_pinned = pin_thread(workers_.back(), cpus[static_cast<size_t>(i)]) && all_pinned;
      size_.store(static_cast<int>(workers_.size()) + 1);
    }
    pinned_.store(all_pinned);
  }

  static bool pin_thread(std::thread& t, int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    // Best effort: a refusal (e.g. the mask changed since) leaves the worker where the scheduler puts it.
    return pthread_setaffinity_np(t.native_handle(), sizeof(set), &set) == 0;
  }

  void stop() {
    {
      std::lock_guard<std::mutex> g(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
    size_.store(1);
    pinned_.store(false);
  }

  // Claims chunks until none is left; the one finishing the last chunk wakes the caller if it sleeps.
  void claim(const std::function<void(int64_t)>& task, int64_t n) {
    for (int64_t c = next_.fetch_add(1); c < n; c = next_.fetch_add(1)) {
      try {
        task(c);
      } catch (...) {  // kept for the caller to rethrow; the other chunks still run
        std::lock_guard<std::mutex> g(mu_);
        if (!error_) error_ = std::current_exception();
      }
      if (done_.fetch_add(1) + 1 == n) {
        std::lock_guard<std::mutex> g(mu_);
        done_cv_.notify_one();
      }
    }
  }

  void loop(uint64_t seen) {
    auto posted = [&] { return quit_.load() || generation_.load() != seen; };
    for (;;) {
      spin_until(posted);
      const std::function<void(int64_t)>* task;
      int64_t n;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, posted);
        if (quit_) return;
        seen = generation_.load();
        task = task_;
        n = nchunks_;
        ++active_;  // the next job waits for this worker to leave before it resets the counter
      }
      claim(*task, n);  // claims nothing if the job's chunks are all taken (task is then never called)
      std::lock_guard<std::mutex> g(mu_);
      if (--active_ == 0) idle_cv_.notify_all();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_, idle_cv_;
  const std::function<void(int64_t)>* task_ = nullptr;  // the job, under mu_
  int64_t nchunks_ = 0;
  int active_ = 0;                // workers inside a job, under mu_
  std::exception_ptr error_;      // the first exception of the job, under mu_
  std::atomic<int64_t> next_{0};  // the next chunk to claim
  std::atomic<int64_t> done_{0};  // chunks finished
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> size_{1};
  std::atomic<bool> started_{false};
  std::atomic<bool> quit_{false};
  std::atomic<bool> busy_{false};
  std::atomic<bool> pinned_{false};  // workers pinned to one CPU each (see Placement above)
};

Pool& raw_pool() {
  static Pool p;
  return p;
}

Pool& pool() {
  Pool& p = raw_pool();
  if (!p.started()) p.start_default();
  return p;
}

}  // namespace

int usable_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

int max_threads() { return kThreadsPerCpu * usable_cpus(); }

std::string check_thread_count(int64_t n, const char* what, const std::string& shown) {
  const int cap = max_threads();
  if (n >= 1 && n <= cap) return {};
  return std::string(what) + " must be an integer from 1 to " + std::to_string(cap) + " (" +
         std::to_string(kThreadsPerCpu) + " x the " + std::to_string(usable_cpus()) +
         " CPUs this process may use), got " + (shown.empty() ? std::to_string(n) : shown);
}

void init_threads_from_env() {
  env_threads_value = 0;
  const char* env = std::getenv("CNNKERN_NUM_THREADS");
  if (!env) return;
  std::string s(env);
  const auto b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  s = b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
  if (s.empty()) return;  // set but empty: as if unset (the shell idiom for clearing a variable)
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (*end != '\0' || end == s.c_str())
    throw std::invalid_argument("CNNKERN_NUM_THREADS must be an integer from 1 to " +
                                std::to_string(max_threads()) + ", got '" + std::string(env) + "'");
  const std::string err = check_thread_count(errno == ERANGE ? (v < 0 ? -1 : INT64_MAX) : v,
                                             "CNNKERN_NUM_THREADS", "'" + std::string(env) + "'");
  if (!err.empty()) throw std::invalid_argument(err);
  env_threads_value = static_cast<int>(v);
}

int env_threads() { return env_threads_value; }

int num_threads() { return pool().size(); }

bool threads_pinned() { return pool().pinned(); }

void set_num_threads(int n) {
  const std::string err = check_thread_count(n, "n");
  if (!err.empty()) throw std::invalid_argument(err);
  raw_pool().resize(n);  // not pool(): a CNNKERN_NUM_THREADS that cannot start must not block the way out
}

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int nt = num_threads();
  const int64_t chunks = nt == 1 ? 1 : std::min<int64_t>(n, kChunksPerThread * nt);
  pool().run(chunks, [&](int64_t c) {
    const int64_t begin = n * c / chunks, end = n * (c + 1) / chunks;
    if (begin < end) fn(begin, end);
  });
}

void parallel_for_dynamic(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t chunks = (n + grain - 1) / grain;
  pool().run(chunks, [&](int64_t c) { fn(c * grain, std::min(n, (c + 1) * grain)); });
}

void parallel_chunks(int64_t nchunks, const std::function<void(int64_t)>& fn) { pool().run(nchunks, fn); }

int64_t reduction_chunks(int64_t items, int64_t len_per_item, int64_t partial_floats) {
  if (items <= 1) return 1;
  const int64_t by_len = std::max<int64_t>(1, items * len_per_item / kMinChunkLen);
  const int64_t by_mem = std::max<int64_t>(1, kChunkBudgetFloats / std::max<int64_t>(1, partial_floats));
  int64_t c = std::min({items, kMaxChunks, by_len, by_mem});
  if (c > 4) c -= c % 4;  // a multiple of 4: the chunks divide evenly over 1, 2 and 4 threads
  return c;
}

}  // namespace cnnkern
