// The sidecar runs each task exactly once — on its thread when idle, on the caller's when busy or
// not yet started — rethrows what a task threw, and never lets a task outlive the frame that owns it.
#include "common/sidecar.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

namespace ruvllm::common {
namespace {

// Fails the test (instead of hanging it until ctest's timeout) when the flag never comes.
void wait_for(const std::atomic<bool>& flag) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!flag) {
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "waited 30 s for the sidecar";
      return;
    }
    std::this_thread::yield();
  }
}

TEST(Sidecar, RunsTheOtherHalfBesideTheCaller) {
  Sidecar sidecar;
  std::atomic<bool> started{false}, release{false};
  std::thread::id ran_on;
  int result = 0;
  auto work = [&] {
    started = true;
    ran_on = std::this_thread::get_id();
    wait_for(release);
    result = 6 * 7;
  };
  Sidecar::Task task(sidecar, work);
  wait_for(started);  // an idle sidecar took it, and is running it now
  release = true;
  task.get();  // waits for it
  EXPECT_EQ(result, 42);
  EXPECT_NE(ran_on, std::this_thread::get_id());
  task.get();  // a second get() neither reruns nor blocks
  EXPECT_EQ(result, 42);
}

TEST(Sidecar, RunsOnTheCallerWhenBusyOrNotYetStartedAndEveryTaskExactlyOnce) {
  Sidecar sidecar;
  std::atomic<bool> started{false}, release{false};
  auto blocker = [&] {
    started = true;
    wait_for(release);
  };
  Sidecar::Task busy(sidecar, blocker);
  wait_for(started);  // the sidecar is busy with `busy`
  std::thread::id ran_on;
  auto work = [&] { ran_on = std::this_thread::get_id(); };
  {
    Sidecar::Task task(sidecar, work);
    task.get();  // must not wait for `busy`: it runs here
  }
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  release = true;
  busy.get();

  // Many requests at once, each task taken by the sidecar, taken back, or run here: once each.
  constexpr int kThreads = 8, kTasks = 500;
  std::vector<std::atomic<int>> runs(kThreads * kTasks);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kTasks; ++i) {
        auto w = [&, i] { ++runs[static_cast<std::size_t>(t * kTasks + i)]; };
        Sidecar::Task task(sidecar, w);
        if (i % 2) std::this_thread::yield();  // give the sidecar a chance to start some
        task.get();
      }
    });
  for (auto& th : threads) th.join();
  for (const auto& r : runs) ASSERT_EQ(r.load(), 1);
}

TEST(Sidecar, RethrowsAndWaitsBeforeTheFrameEnds) {
  Sidecar sidecar;
  auto failing = [] { throw std::runtime_error("half failed"); };
  {
    Sidecar::Task task(sidecar, failing);
    EXPECT_THROW(task.get(), std::runtime_error);  // wherever it ran
  }
  std::atomic<bool> started{false};
  auto failing_there = [&] {
    started = true;
    throw std::runtime_error("half failed on the sidecar");
  };
  {
    Sidecar::Task task(sidecar, failing_there);
    wait_for(started);
    EXPECT_THROW(task.get(), std::runtime_error);
  }
  // The other half throws first: the frame unwinds, and the task's destructor waits for the
  // sidecar to finish touching `slow_result` before it goes.
  std::atomic<int> finished{0};
  started = false;
  try {
    int slow_result = 0;
    auto slow = [&] {
      started = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      slow_result = 1;
      ++finished;
    };
    Sidecar::Task task(sidecar, slow);
    wait_for(started);
    throw std::logic_error("the other half failed");
  } catch (const std::logic_error&) {
  }
  EXPECT_EQ(finished.load(), 1);
  // A task abandoned before the sidecar started it is withdrawn, never run after its frame.
  std::atomic<bool> release{false};
  started = false;
  auto blocker = [&] {
    started = true;
    wait_for(release);
  };
  Sidecar::Task busy(sidecar, blocker);
  wait_for(started);
  std::atomic<int> abandoned_runs{0};
  {
    auto never = [&] { ++abandoned_runs; };
    Sidecar::Task abandoned(sidecar, never);  // busy: not handed over; dropped without get()
  }
  release = true;
  busy.get();
  EXPECT_EQ(abandoned_runs.load(), 0);
}

}  // namespace
}  // namespace ruvllm::common
