// Shared by the kernels in this folder: share a loop's iterations out over XLA's intra-op
// thread pool (the ffi::ThreadPool a handler binds with .Ctx<ffi::ThreadPool>()).
#ifndef LRU_CSRC_PARALLEL_ROWS_H_
#define LRU_CSRC_PARALLEL_ROWS_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>

#include "xla/ffi/api/ffi.h"

namespace lru_native {

// Runs work(row) for row in [0, rows) on the caller and the pool's threads. Late tasks find
// nothing left and return; the caller waits until every row is done, so `work` (which
// references the caller's frame) is never called after this returns.
inline void ParallelRows(xla::ffi::ThreadPool& pool, int64_t rows,
                         const std::function<void(int64_t)>& work) {
  struct Shared {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    int64_t rows = 0;
    const std::function<void(int64_t)>* work = nullptr;
    void Run() {
      for (int64_t r; (r = next.fetch_add(1)) < rows;) {
        (*work)(r);
        done.fetch_add(1, std::memory_order_release);
      }
    }
  };
  auto shared = std::make_shared<Shared>();
  shared->rows = rows;
  shared->work = &work;
  int64_t helpers = std::min<int64_t>(pool.num_threads(), rows) - 1;
  for (int64_t i = 0; i < helpers; ++i) pool.Schedule([shared] { shared->Run(); });
  shared->Run();
  while (shared->done.load(std::memory_order_acquire) < rows) std::this_thread::yield();
}

}  // namespace lru_native

#endif  // LRU_CSRC_PARALLEL_ROWS_H_
