// The HTTP layer's JSON: OpenAI-shaped errors, the one table from error codes to statuses, the
// request body parse (UTF-8, nesting depth, an object) and typed field access that names the field.
#pragma once

#include <httplib.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "ruvllm/error.h"

namespace ruvllm::server::detail {

using json = nlohmann::json;

// A request error: the status and OpenAI's error type travel with the message.
struct HttpError : std::runtime_error {
  int status;
  std::string type, param, code;
  HttpError(int s, std::string message, std::string p = {}, std::string c = {});
};

// The one table from the rooms' error codes to HTTP statuses (ruvllm/error.h says whose move each
// code is): the caller's mistakes are 4xx, the operator's 5xx.
int http_status(ErrorCode code);
HttpError http_error(const Error& e, std::string param = {});

json error_body(int status, const std::string& message, const std::string& param = {}, const std::string& code = {});
void send_json(httplib::Response& res, int status, const json& body);

// The body as a JSON object: valid UTF-8, nested at most common::kMaxJsonDepth levels. HttpError 400 otherwise.
json parse_body(const httplib::Request& req);

// Typed field access: a missing required field or a wrong type is a 400 naming the field.
std::string get_string(const json& b, const char* key, bool required, std::string fallback = {});
std::optional<double> get_number(const json& b, const char* key, double lo, double hi);
std::optional<int64_t> get_integer(const json& b, const char* key, int64_t lo, int64_t hi);
// temperature or top_p: a number in the range llm defines for every entry point.
std::optional<double> get_sampling(const json& b, const char* key, std::optional<std::string> (*problem)(double));
bool get_bool(const json& b, const char* key, bool fallback);

// OpenAI's encoding_format "base64": the vector's float32 values, little-endian, in base64.
std::string base64_floats(const std::vector<float>& v);

}  // namespace ruvllm::server::detail
