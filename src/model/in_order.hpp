// Parallel work whose results are consumed in a fixed order: the compressor encodes tensors on
// every core and writes them in checkpoint order, so the file does not depend on timing.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace codecllm::model {

// Runs make(i) for i in [0, n) on `threads` worker threads, and use(i, result) on the calling
// thread for i = 0, 1, ..., n - 1, each as soon as its result is ready. Items start in `order`
// (a permutation of [0, n)), and only while the weight of items started but not yet used stays
// within `budget`, which bounds the results waiting in memory; the item next to be used starts
// regardless (out of order if need be), so the budget never deadlocks. Starting the heaviest
// items first keeps one of them from running alone at the end. The first exception thrown by
// make or use is rethrown once every worker has stopped.
template <typename Result, typename Make, typename Use>
void run_in_order(const std::vector<size_t>& order, const std::vector<uint64_t>& weight, uint64_t budget,
                  unsigned threads, Make&& make, Use&& use) {
  const size_t n = order.size();
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::optional<Result>> results(n);
  std::vector<bool> started(n);
  size_t next = 0, used = 0, count = 0;  // position in `order`; items used; items started
  uint64_t pending = 0;                  // weight started and not yet used
  std::exception_ptr error;
  auto fail = [&] {
    if (!error) error = std::current_exception();
    changed.notify_all();
  };
  auto pick = [&]() -> std::optional<size_t> {
    while (next < n && started[order[next]]) ++next;
    if (used < n && !started[used]) return used;
    if (next < n && pending + weight[order[next]] <= budget) return order[next];
    return std::nullopt;
  };
  auto worker = [&] {
    std::unique_lock<std::mutex> lock(mutex);
    for (;;) {
      std::optional<size_t> item;
      changed.wait(lock, [&] { return error || count == n || (item = pick()); });
      if (error || count == n) return;
      const size_t i = *item;
      started[i] = true;
      ++count;
      pending += weight[i];
      lock.unlock();
      try {
        Result r = make(i);
        lock.lock();
        results[i] = std::move(r);
        changed.notify_all();
      } catch (...) {
        lock.lock();
        fail();
      }
    }
  };
  std::vector<std::thread> pool;
  for (unsigned k = 0; k < std::max(1u, threads); ++k) pool.emplace_back(worker);
  for (std::unique_lock<std::mutex> lock(mutex); used < n;) {
    changed.wait(lock, [&] { return error || results[used]; });
    if (error) break;
    Result r = std::move(*results[used]);
    results[used].reset();
    lock.unlock();
    try {
      use(used, r);
      lock.lock();
    } catch (...) {
      lock.lock();
      fail();
      break;
    }
    pending -= weight[used++];
    changed.notify_all();
  }
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace codecllm::model
