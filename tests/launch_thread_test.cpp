// The Python package's LaunchThread (python/src/launch_thread.hpp): jobs run in the order posted,
// on a thread other than the caller's; wait_for and drain return once their jobs ran; an error
// reaches the caller and stops the jobs after it; the destructor runs what is still queued.
#include "launch_thread.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace {

using codecllm::python::LaunchThread;

struct Recorder {
  std::mutex mutex;
  std::vector<int> jobs;
  std::thread::id thread;
  void operator()(int job) {
    const std::lock_guard<std::mutex> lock(mutex);
    jobs.push_back(job);
    thread = std::this_thread::get_id();
  }
};

TEST(LaunchThread, RunsJobsInOrderOnItsOwnThread) {
  Recorder r;
  std::atomic<int> setups{0};
  LaunchThread t([&] { ++setups; }, [&](int job) { r(job); });
  uint64_t last = 0;
  for (int j = 0; j < 100; ++j) last = t.post(j);
  EXPECT_EQ(last, 100u);
  t.wait_for(50);
  {
    const std::lock_guard<std::mutex> lock(r.mutex);
    ASSERT_GE(r.jobs.size(), 50u);
  }
  t.drain();
  const std::lock_guard<std::mutex> lock(r.mutex);
  ASSERT_EQ(r.jobs.size(), 100u);
  for (int j = 0; j < 100; ++j) EXPECT_EQ(r.jobs[size_t(j)], j);
  EXPECT_NE(r.thread, std::this_thread::get_id());
  EXPECT_EQ(setups.load(), 1);
}

TEST(LaunchThread, AFailedJobReachesTheCallerAndStopsTheJobsAfterIt) {
  Recorder r;
  LaunchThread t([] {},
                 [&](int job) {
                   if (job == 3) throw std::runtime_error("job 3 failed");
                   r(job);
                 });
  uint64_t serial[6] = {};
  for (int j = 0; j < 6; ++j) serial[j] = t.post(j);
  EXPECT_THROW(t.wait_for(serial[3]), std::runtime_error);
  EXPECT_THROW(t.wait_for(serial[5]), std::runtime_error);  // and keeps failing
  EXPECT_THROW(t.drain(), std::runtime_error);
  const std::lock_guard<std::mutex> lock(r.mutex);
  EXPECT_EQ(r.jobs, (std::vector<int>{0, 1, 2}));
}

TEST(LaunchThread, AFailedSetupRunsNoJob) {
  Recorder r;
  LaunchThread t([] { throw std::runtime_error("no device"); }, [&](int job) { r(job); });
  const uint64_t s = t.post(1);
  EXPECT_THROW(t.wait_for(s), std::runtime_error);
  const std::lock_guard<std::mutex> lock(r.mutex);
  EXPECT_TRUE(r.jobs.empty());
}

TEST(LaunchThread, TheDestructorRunsWhatIsQueued) {
  Recorder r;
  {
    LaunchThread t([] {},
                   [&](int job) {
                     std::this_thread::sleep_for(std::chrono::milliseconds(1));
                     r(job);
                   });
    for (int j = 0; j < 20; ++j) t.post(j);
  }
  EXPECT_EQ(r.jobs.size(), 20u);
}

}  // namespace
