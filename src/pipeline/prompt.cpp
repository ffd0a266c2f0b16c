#include "prompt.h"

namespace ruvllm::pipeline::detail {

llm::GenerateRequest generate_request(const Request& req, const std::string& user_turn,
                                      const std::string& system_prompt, bool chat_template) {
  llm::GenerateRequest g;
  std::vector<llm::ChatMessage> messages{{"system", system_prompt}};
  messages.insert(messages.end(), req.history.begin(), req.history.end());
  messages.push_back({"user", user_turn});
  if (chat_template) {
    g.messages = std::move(messages);
    g.cache_prefix = 1 + req.history.size();  // system prompt (+ earlier turns): restored, not prefilled
  } else {
    // A model without a chat template (a base model): a plain transcript, prefix = the system part.
    g.prompt = messages[0].content + "\n\n";
    g.cache_prefix = g.prompt.size();
    for (std::size_t i = 1; i < messages.size(); ++i)
      g.prompt += (messages[i].role == "assistant" ? "Assistant: " : "User: ") + messages[i].content + "\n";
    g.prompt += "Assistant:";
  }
  g.keep_state = !req.history.empty();
  g.stop = req.stop;
  g.ignore_eos = req.ignore_eos;
  g.cancel = req.cancel;
  return g;
}

}  // namespace ruvllm::pipeline::detail
