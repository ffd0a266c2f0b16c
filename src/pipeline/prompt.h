// Prompt assembly: the system prompt, earlier turns and the user turn with its context, as chat
// messages for a model with a chat template, else as a plain transcript.
#pragma once

#include <string>

#include "ruvllm/llm.h"
#include "ruvllm/pipeline.h"

namespace ruvllm::pipeline::detail {

// The request to the engine without sampling and length (the caller's): messages or prompt, the
// reusable prefix (system prompt and earlier turns), stop strings, cancellation, and whether to
// keep the state for the next turn.
llm::GenerateRequest generate_request(const Request& req, const std::string& user_turn,
                                      const std::string& system_prompt, bool chat_template);

}  // namespace ruvllm::pipeline::detail
