// A persistent pool of worker threads for data-parallel loops (one task per core).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace awq {

class ThreadPool {
 public:
  // n_threads counts the calling thread: ThreadPool(2) starts one worker.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Splits [0, n) into contiguous chunks, one per thread, and runs fn(begin, end, thread_index)
  // on every thread including the caller; returns when all are done. Chunk boundaries are
  // multiples of `grain` (except the last) so callers can keep SIMD tiles whole.
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn,
                   int64_t grain = 1);

  // Like ParallelFor, but [0, n) is cut into about `chunks_per_thread` chunks per thread that the
  // threads take in turn from a shared counter, so a thread slowed by the host (a neighbour, a
  // descheduling) is covered by the others instead of stalling the whole loop. fn may run several
  // times per thread. For memory-bound loops of even cost per index (decode's GEMVs).
  void ParallelForDynamic(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn,
                          int64_t grain = 1, int chunks_per_thread = 4);

  // Runs fn(thread_index) once on every thread.
  void RunOnAll(const std::function<void(int)>& fn);

  // The process-wide pool; its size comes from AWQ_NUM_THREADS or the number of online cores.
  static ThreadPool& Global();

 private:
  void WorkerLoop(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace awq
