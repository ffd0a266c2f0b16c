// A sidecar: one helper thread for the independent half of a short read (dense ‖ lexical search,
// an expansion's node rows ‖ the edges among them). Between two generations both cores are idle and each half
// mostly waits on memory the model's weights have just swept out of the caches, so running the two
// side by side takes the longer one's time instead of the sum.
//
// It never queues: a half handed over while the sidecar is busy with another request's half runs
// on the caller's thread, so concurrent requests degrade to the plain sequential read, never to a
// wait on each other.
#pragma once

#include <condition_variable>
#include <exception>
#include <mutex>
#include <stop_token>
#include <thread>
#include <utility>

namespace ruvllm::common {

class Sidecar {
 public:
  // One half of a read: handed to the sidecar on construction when it is idle; `get()` runs it here
  // if it was not or if the sidecar has not started it yet (waking a sleeping core costs ~0.1 ms on
  // a virtual machine: more than a small half), waits for it otherwise, and rethrows what it threw.
  // The destructor withdraws or waits too, so the work never outlives the frame that owns what it
  // touches (an exception on the other half).
  // `work` is borrowed, not copied: it must outlive the task (a lambda in the same scope).
  class Task {
   public:
    template <typename Work>
    Task(Sidecar& sidecar, Work& work)
        : sidecar_(sidecar), work_(&work), call_([](void* w) { (*static_cast<Work*>(w))(); }) {
      sidecar_.hand_over(*this);
    }
    ~Task() {
      if (handed_over_ && !sidecar_.take_back(*this)) sidecar_.wait(*this);
    }
    Task(const Task&) = delete;
    Task& operator=(const Task&) = delete;

    void get() {
      // Not started yet (the sidecar is still waking): cheaper to run it here than to wait.
      if (handed_over_ && sidecar_.take_back(*this)) handed_over_ = false;
      if (!handed_over_) {
        if (!ran_here_) {
          ran_here_ = true;
          call_(work_);
        }
        return;
      }
      sidecar_.wait(*this);
      if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    }

   private:
    friend class Sidecar;
    Sidecar& sidecar_;
    void* work_;
    void (*call_)(void*);
    std::exception_ptr error_;
    bool handed_over_ = false, started_ = false, done_ = false, ran_here_ = false;
  };

  Sidecar() : thread_([this](std::stop_token stop) { loop(stop); }) {}
  ~Sidecar() {
    {
      std::lock_guard lock(mutex_);
      thread_.request_stop();
    }
    wake_.notify_all();
  }  // the jthread joins
  Sidecar(const Sidecar&) = delete;
  Sidecar& operator=(const Sidecar&) = delete;

 private:
  void hand_over(Task& task) {
    {
      std::lock_guard lock(mutex_);
      if (current_) return;  // busy with another request's half: the task runs in get()
      current_ = &task;
      task.handed_over_ = true;
    }
    wake_.notify_one();
  }

  // Withdraws a task the sidecar has not started; false once it has.
  bool take_back(Task& task) {
    std::lock_guard lock(mutex_);
    if (current_ != &task || task.started_) return false;
    current_ = nullptr;
    return true;
  }

  void wait(Task& task) {
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return task.done_; });
  }

  void loop(std::stop_token stop) {
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return current_ || stop.stop_requested(); });
      if (!current_) return;  // stopped with nothing in hand
      Task& task = *current_;
      task.started_ = true;
      lock.unlock();
      try {
        task.call_(task.work_);
      } catch (...) {
        task.error_ = std::current_exception();
      }
      lock.lock();
      task.done_ = true;
      current_ = nullptr;
      done_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_, done_;
  Task* current_ = nullptr;  // the task in hand; null = idle
  std::jthread thread_;      // last: started after, and joined before, the members it uses
};

}  // namespace ruvllm::common
