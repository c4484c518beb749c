// A thread of its own that makes a caller's CUDA calls for it, in the order they were posted
// (plain C++: tests/launch_thread_test.cpp runs it on any machine).
//
// Why: the block streamer's decodes (a stream wait, a kernel launch, an event record a block)
// were enqueued by the thread that runs the model's Python, inside a generate() that is bound by
// that thread. Measured on the H200 machine's host (scripts/device/python_profile.py, Llama-3-8B
// shape, batch 8): a CUDA runtime call there costs 5-10 us, a block's hand-over ~33 us, ~1 ms a
// step. Posted here, a decode costs the caller a queue push; the caller keeps only the calls
// that must sit at a place in its own stream (the compute stream's event record and wait).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

namespace codecllm::python {

class LaunchThread {
 public:
  // setup() runs first on the thread (a CUDA device made current), then run(job) for each job.
  LaunchThread(std::function<void()> setup, std::function<void(int)> run)
      : setup_(std::move(setup)), run_(std::move(run)) {
    thread_ = std::thread([this] { loop(); });
  }
  // Runs what was posted, then ends the thread.
  ~LaunchThread() {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    posted_cv_.notify_one();
    thread_.join();
  }
  LaunchThread(const LaunchThread&) = delete;
  LaunchThread& operator=(const LaunchThread&) = delete;

  // Queues a job; returns its number (1, 2, ...) for wait_for.
  uint64_t post(int job) {
    uint64_t serial = 0;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(job);
      serial = ++posted_;
    }
    posted_cv_.notify_one();
    return serial;
  }

  // Returns once job `serial` (and every job before it) has made its calls; throws the error of
  // any job that failed (and keeps throwing it: the jobs after a failed one are not run).
  void wait_for(uint64_t serial) {
    if (done_.load(std::memory_order_acquire) < serial) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_cv_.wait(lock, [&] { return done_.load(std::memory_order_relaxed) >= serial; });
    }
    if (failed_.load(std::memory_order_acquire)) std::rethrow_exception(error_);
  }

  // Every job posted so far has made its calls.
  void drain() {
    uint64_t last = 0;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      last = posted_;
    }
    wait_for(last);
  }

 private:
  void loop() {
    bool ok = run_guarded(setup_);
    for (;;) {
      int job = 0;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        posted_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopped, and nothing left to run
        job = queue_.front();
        queue_.pop_front();
      }
      if (ok) ok = run_guarded([&] { run_(job); });
      {
        // Under the lock, so that a caller between its check and its wait cannot miss the wake.
        const std::lock_guard<std::mutex> lock(mutex_);
        done_.fetch_add(1, std::memory_order_release);
      }
      done_cv_.notify_all();
    }
  }

  template <class F>
  bool run_guarded(F&& f) {
    try {
      f();
      return true;
    } catch (...) {
      error_ = std::current_exception();  // published by failed_ (release), read after it (acquire)
      failed_.store(true, std::memory_order_release);
      return false;
    }
  }

  std::function<void()> setup_;
  std::function<void(int)> run_;
  std::mutex mutex_;
  std::condition_variable posted_cv_, done_cv_;
  std::deque<int> queue_;
  uint64_t posted_ = 0;
  std::atomic<uint64_t> done_{0};
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;  // started last, once every member it reads exists
};

}  // namespace codecllm::python
