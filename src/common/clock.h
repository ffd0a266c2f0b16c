// The one clock of the rooms: steady time for durations (stage timings, deadlines), wall time in
// milliseconds since the Unix epoch for what is stored (node and edge timestamps, log rows).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace ruvllm::common {

using Clock = std::chrono::steady_clock;

inline int64_t micros_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
}

inline int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Now in UTC as ISO 8601 with milliseconds: "2026-12-04T01:50:50.123Z" (request and feedback logs).
std::string iso8601_now();

}  // namespace ruvllm::common
