#include "http.h"

#include <bit>
#include <limits>
#include <sstream>

#include "common/json_depth.h"
#include "common/utf8.h"
#include "ruvllm/llm.h"

namespace ruvllm::server::detail {

HttpError::HttpError(int s, std::string message, std::string p, std::string c)
    : std::runtime_error(std::move(message)), status(s), param(std::move(p)), code(std::move(c)) {
  type = s == 401   ? "authentication_error"
         : s == 404 ? "not_found_error"
         : s == 429 ? "rate_limit_error"
         : s >= 500 ? "server_error"
                    : "invalid_request_error";
}

int http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_argument: return 400;
    case ErrorCode::not_found: return 404;
    case ErrorCode::conflict: return 409;
    case ErrorCode::resource_exhausted: return 429;
    case ErrorCode::unavailable: return 503;
    case ErrorCode::io:
    case ErrorCode::corrupt:
    case ErrorCode::internal: return 500;
  }
  return 500;
}

HttpError http_error(const Error& e, std::string param) {
  return HttpError(http_status(e.code()), e.what(), std::move(param));
}

json error_body(int status, const std::string& message, const std::string& param, const std::string& code) {
  HttpError e(status, message, param, code);
  json err = {{"message", message}, {"type", e.type}};
  err["param"] = param.empty() ? json(nullptr) : json(param);
  err["code"] = code.empty() ? json(nullptr) : json(code);
  return {{"error", err}};
}

// OpenAI's encoding_format "base64": the vector's float32 values, little-endian, in base64 (the
// official clients ask for it by default and decode it themselves).
std::string base64_floats(const std::vector<float>& v) {
  static constexpr char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes;
  bytes.reserve(v.size() * 4);
  for (float f : v)
    for (int shift = 0; shift < 32; shift += 8) bytes.push_back(static_cast<char>(std::bit_cast<uint32_t>(f) >> shift));
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::size_t n = std::min<std::size_t>(3, bytes.size() - i);
    uint32_t chunk = 0;
    for (std::size_t k = 0; k < 3; ++k) chunk = chunk << 8 | (k < n ? static_cast<unsigned char>(bytes[i + k]) : 0u);
    for (std::size_t k = 0; k < 4; ++k) out.push_back(k <= n ? digits[chunk >> (18 - 6 * k) & 63] : '=');
  }
  return out;
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

json parse_body(const httplib::Request& req) {
  if (auto at = common::first_invalid_utf8(req.body))
    throw HttpError(400, "the request body is not valid UTF-8 (byte " + std::to_string(*at) + ")");
  if (common::json_nests_deeper_than(req.body))
    throw HttpError(400, "the request body nests arrays and objects deeper than " +
                             std::to_string(common::kMaxJsonDepth) + " levels");
  json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded()) throw HttpError(400, "the request body is not valid JSON");
  if (!body.is_object()) throw HttpError(400, "the request body must be a JSON object");
  return body;
}

// Typed field access: a wrong type is a 400 naming the field.
std::string get_string(const json& b, const char* key, bool required, std::string fallback) {
  if (!b.contains(key) || b[key].is_null()) {
    if (required) throw HttpError(400, std::string("'") + key + "' is required", key);
    return fallback;
  }
  if (!b[key].is_string()) throw HttpError(400, std::string("'") + key + "' must be a string", key);
  return b[key].get<std::string>();
}

std::optional<double> get_number(const json& b, const char* key, double lo, double hi) {
  if (!b.contains(key) || b[key].is_null()) return std::nullopt;
  if (!b[key].is_number()) throw HttpError(400, std::string("'") + key + "' must be a number", key);
  const double v = b[key].get<double>();
  if (!(v >= lo && v <= hi)) {
    std::ostringstream s;
    s << "'" << key << "' must be in [" << lo << ", " << hi << "], got " << b[key].dump();
    throw HttpError(400, s.str(), key);
  }
  return v;
}

std::optional<int64_t> get_integer(const json& b, const char* key, int64_t lo, int64_t hi) {
  if (!b.contains(key) || b[key].is_null()) return std::nullopt;
  if (!b[key].is_number_integer()) throw HttpError(400, std::string("'") + key + "' must be an integer", key);
  const int64_t v = b[key].get<int64_t>();
  if (v < lo || v > hi)
    throw HttpError(400,
                    std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                        "], got " + std::to_string(v),
                    key);
  return v;
}

// temperature or top_p: a number in the range llm defines for every entry point.
std::optional<double> get_sampling(const json& b, const char* key, std::optional<std::string> (*problem)(double)) {
  const auto v = get_number(b, key, -std::numeric_limits<double>::max(), std::numeric_limits<double>::max());
  if (v)
    if (auto p = problem(*v)) throw HttpError(400, std::string("'") + key + "' " + *p, key);
  return v;
}

bool get_bool(const json& b, const char* key, bool fallback) {
  if (!b.contains(key) || b[key].is_null()) return fallback;
  if (!b[key].is_boolean()) throw HttpError(400, std::string("'") + key + "' must be true or false", key);
  return b[key].get<bool>();
}

}  // namespace ruvllm::server::detail
