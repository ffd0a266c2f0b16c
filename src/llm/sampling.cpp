#include "sampling.h"

#include <cmath>
#include <cstdio>
#include <string>

namespace ruvllm::llm::detail {
namespace {

void require(bool ok, const std::string& what) {
  if (!ok) throw Error("invalid sampling parameter: " + what);
}

}  // namespace
}  // namespace ruvllm::llm::detail

namespace ruvllm::llm {

namespace {

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

std::optional<std::string> temperature_problem(double value) {
  if (value >= 0 && value <= kMaxTemperature) return std::nullopt;
  return "must be in [0, " + number(kMaxTemperature) + "], got " + number(value);
}

std::optional<std::string> top_p_problem(double value) {
  if (value > 0 && value <= 1) return std::nullopt;
  return "must be in (0, 1], got " + number(value);
}

void check_temperature(double value, std::string_view field) {
  if (auto problem = temperature_problem(value)) throw Error(std::string(field) + " " + *problem);
}

void check_top_p(double value, std::string_view field) {
  if (auto problem = top_p_problem(value)) throw Error(std::string(field) + " " + *problem);
}

}  // namespace ruvllm::llm

namespace ruvllm::llm::detail {

void validate(const Sampling& s) {
  check_temperature(s.temperature, "invalid sampling parameter: temperature");
  check_top_p(s.top_p, "invalid sampling parameter: top_p");
  require(s.top_k >= 0, "top_k must be >= 0, got " + std::to_string(s.top_k));
  require(s.min_p >= 0.0f && s.min_p < 1.0f, "min_p must be in [0, 1), got " + std::to_string(s.min_p));
  require(s.repeat_penalty > 0.0f && std::isfinite(s.repeat_penalty),
          "repeat_penalty must be a finite number > 0, got " + std::to_string(s.repeat_penalty));
  require(s.repeat_last_n >= 0, "repeat_last_n must be >= 0, got " + std::to_string(s.repeat_last_n));
}

SamplerPtr make_sampler(const Sampling& s, std::span<const llama_token> prompt, int32_t n_vocab) {
  const bool penalise = s.repeat_penalty != 1.0f && s.repeat_last_n > 0;
  if (s.temperature == 0.0f && !penalise) return nullptr;  // plain argmax: the runner takes it directly
  llama_sampler_chain_params params = llama_sampler_chain_default_params();
  params.no_perf = true;
  SamplerPtr chain(llama_sampler_chain_init(params));
  if (penalise) {
    llama_sampler_chain_add(chain.get(),
                            llama_sampler_init_penalties(n_vocab, s.repeat_last_n, s.repeat_penalty, 0.0f, 0.0f));
  }
  if (s.temperature == 0.0f) {
    llama_sampler_chain_add(chain.get(), llama_sampler_init_greedy());
  } else {
    if (s.top_k > 0) llama_sampler_chain_add(chain.get(), llama_sampler_init_top_k(s.top_k));
    if (s.top_p < 1.0f) llama_sampler_chain_add(chain.get(), llama_sampler_init_top_p(s.top_p, 1));
    if (s.min_p > 0.0f) llama_sampler_chain_add(chain.get(), llama_sampler_init_min_p(s.min_p, 1));
    llama_sampler_chain_add(chain.get(), llama_sampler_init_temp(s.temperature));
    llama_sampler_chain_add(chain.get(), llama_sampler_init_dist(s.seed.value_or(LLAMA_DEFAULT_SEED)));
  }
  if (penalise) {
    const std::size_t n = std::min<std::size_t>(prompt.size(), static_cast<std::size_t>(s.repeat_last_n));
    for (llama_token t : prompt.subspan(prompt.size() - n)) llama_sampler_accept(chain.get(), t);
  }
  return chain;
}

}  // namespace ruvllm::llm::detail
