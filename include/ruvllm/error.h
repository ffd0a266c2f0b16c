// ruvllm/error.h — the one error every room throws: a code a program can act on and a message a
// person can. Rooms name it as their own (`llm::Error`, `memory::Error`, ...): the same type.
//
// The code says whose move it is. invalid_argument, not_found and conflict are the caller's (fix the
// request); resource_exhausted is "later, or less"; unavailable, io, corrupt and internal are the
// operator's (a model that does not load, a disk that fails, a damaged file, a bug). The server
// maps codes to HTTP statuses through one table (http_status in src/server/http.cpp); the CLI prints the message
// and exits non-zero.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace ruvllm {

enum class ErrorCode {
  invalid_argument,    // bad input or configuration (a prompt longer than the context too): the
                       // message names the field and the rule
  not_found,           // a named node, edge, model, request id or file does not exist
  conflict,            // it exists already (a node id), or another writer got there first
  resource_exhausted,  // a limit of the moment: the queue is full, try later
  unavailable,         // not now: shutting down, a database locked, a model that failed to load
  io,                  // the file system failed: read, write, rename, disk full
  corrupt,             // stored data is damaged: a store, index, model or router file
  internal,            // a bug, or a failure nothing above describes
};

// "invalid_argument", "not_found", ... (the words of the enum).
std::string_view to_string(ErrorCode code);

class Error : public std::runtime_error {
 public:
  // Most throws are the caller's mistake, so that is the default.
  explicit Error(const std::string& message, ErrorCode code = ErrorCode::invalid_argument)
      : std::runtime_error(message), code_(code) {}
  Error(ErrorCode code, const std::string& message) : Error(message, code) {}

  ErrorCode code() const noexcept { return code_; }
  // The same error with `context` before its message ("router.file: " + ...), code kept.
  Error prefixed(std::string_view context) const { return Error(std::string(context) + what(), code_); }

 private:
  ErrorCode code_;
};

}  // namespace ruvllm
