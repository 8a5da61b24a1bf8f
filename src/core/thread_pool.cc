// Thread pool: workers spin briefly on a generation counter (decode issues hundreds of small
// parallel loops per token, so a futex wake per loop would cost more than the work), then sleep.
#include "awq/thread_pool.h"

#include <pthread.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <string>

#include "awq/error.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define AWQ_PAUSE() _mm_pause()
#else
#define AWQ_PAUSE() ((void)0)
#endif

namespace awq {

namespace {
// About 50-100 microseconds of spinning before a worker goes to sleep.
constexpr int kSpinIterations = 20000;
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  // Workers take no asynchronous signals (Ctrl-C, SIGTERM, timers): the kernel then delivers
  // them to a thread of the host program, which is where their handlers expect to run (Python's
  // sets a flag for its main thread), never in the middle of a kernel. Faults (SIGSEGV, ...) stay
  // with the thread that caused them.
  sigset_t async_signals, old;
  sigfillset(&async_signals);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS}) {
    sigdelset(&async_signals, sig);
  }
  pthread_sigmask(SIG_BLOCK, &async_signals, &old);  // inherited by the threads created here
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  while (true) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int spin = 0; gen == seen && spin < kSpinIterations; ++spin) {
      AWQ_PAUSE();
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      gen = generation_.load(std::memory_order_acquire);
    }
    seen = gen;
    if (stop_.load()) return;
    (*job_)(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::RunOnAll(const std::function<void(int)>& fn) {
  if (n_threads_ == 1) {
    fn(0);
    return;
  }
  job_ = &fn;
  pending_.store(n_threads_ - 1, std::memory_order_release);
  {
    // Taking the lock orders the increment with a worker that is about to wait.
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  cv_.notify_all();
  fn(0);
  // Spin while the workers are likely still busy; yield after that so a worker that the OS
  // descheduled (a loaded machine) gets the core back instead of competing with our spinning.
  for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
    if (spin < kSpinIterations) {
      AWQ_PAUSE();
    } else {
      std::this_thread::yield();
    }
  }
  job_ = nullptr;
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn,
                             int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t units = (n + grain - 1) / grain;
  const int used = static_cast<int>(std::min<int64_t>(n_threads_, units));
  if (used == 1) {
    fn(0, n, 0);
    return;
  }
  RunOnAll([&](int t) {
    if (t >= used) return;
    const int64_t u0 = units * t / used, u1 = units * (t + 1) / used;
    const int64_t b = u0 * grain, e = std::min(n, u1 * grain);
    if (b < e) fn(b, e, t);
  });
}

void ThreadPool::ParallelForDynamic(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn,
                                    int64_t grain, int chunks_per_thread) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t units = (n + grain - 1) / grain;
  const int64_t n_chunks =
      std::min<int64_t>(units, static_cast<int64_t>(n_threads_) * std::max(1, chunks_per_thread));
  if (n_threads_ == 1 || n_chunks == 1) {
    fn(0, n, 0);
    return;
  }
  std::atomic<int64_t> next{0};
  RunOnAll([&](int t) {
    for (int64_t c = next.fetch_add(1, std::memory_order_relaxed); c < n_chunks;
         c = next.fetch_add(1, std::memory_order_relaxed)) {
      const int64_t b = units * c / n_chunks * grain,
                    e = std::min(n, units * (c + 1) / n_chunks * grain);
      if (b < e) fn(b, e, t);
    }
  });
}

ThreadPool& ThreadPool::Global() {
  static ThreadPool pool([] {
    if (const char* env = std::getenv("AWQ_NUM_THREADS")) {
      const int n = std::atoi(env);
      if (n > 0) return n;
    }
    return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }());
  return pool;
}

}  // namespace awq
