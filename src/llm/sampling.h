// Sampling parameters → a llama.cpp sampler chain.
#pragma once

#include <llama.h>

#include <memory>
#include <span>

#include "ruvllm/llm.h"

namespace ruvllm::llm::detail {

struct SamplerDeleter {
  void operator()(llama_sampler* sampler) const { llama_sampler_free(sampler); }
};
using SamplerPtr = std::unique_ptr<llama_sampler, SamplerDeleter>;

// Throws Error naming the offending field (NaN fails every range check).
void validate(const Sampling& sampling);

// penalties → top-k → top-p → min-p → temperature → draw; greedy when temperature is 0. The
// prompt's last `repeat_last_n` tokens are fed to the penalty window, as Hugging Face does.
// Returns null for plain greedy decoding (temperature 0, no penalty): the caller takes the argmax.
SamplerPtr make_sampler(const Sampling& sampling, std::span<const llama_token> prompt, int32_t n_vocab);

}  // namespace ruvllm::llm::detail
