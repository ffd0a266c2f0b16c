#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "commands.h"
#include "ruvllm/llm.h"

namespace ruvllm::cli {
namespace {

struct GenerateOptions {
  std::string model, ladder, prompt, system;
  bool chat = false, no_stream = false, mmap = false, json = false;
  int max_tokens = 128, context = 4096, threads = 0;
  llm::Sampling sampling;
  uint32_t seed = 0;
  std::vector<std::string> stop;
};

void run(const GenerateOptions& o, bool seed_given) {
  llm::EngineParams params;
  if (!o.ladder.empty()) {
    params.ladder = llm::read_ladder(o.ladder);
  } else {
    // A bare GGUF path: a one-rung ladder named after the file.
    params.ladder.push_back({std::filesystem::path(o.model).stem().string(), o.model, "", 1.0, 0});
  }
  const std::string name = o.ladder.empty() ? params.ladder.front().name : o.model;
  params.load_mode = o.mmap ? llm::LoadMode::mmap : llm::LoadMode::read;
  params.context = o.context;
  params.threads = o.threads;
  params.parallel = 1;
  llm::Engine engine(std::move(params));
  const llm::ModelInfo info = engine.info(name);
  if (info.generated_weights) {
    std::fprintf(stderr, "note: %s has GENERATED weights (LFM2 shapes, random values): its text is noise\n",
                 name.c_str());
  }

  llm::GenerateRequest request;
  if (o.chat) {
    if (!o.system.empty()) request.messages.push_back({"system", o.system});
    request.messages.push_back({"user", o.prompt});
    request.cache_prefix = o.system.empty() ? 0 : 1;
  } else {
    request.prompt = o.system.empty() ? o.prompt : o.system + "\n" + o.prompt;
  }
  request.sampling = o.sampling;
  if (seed_given) request.sampling.seed = o.seed;
  request.max_tokens = o.max_tokens;
  request.stop = o.stop;
  const bool stream = !o.no_stream && !o.json;
  if (stream) {
    request.on_text = [](std::string_view piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    };
  }
  const llm::GenerateResult r = engine.generate(name, std::move(request));
  const double decode_s = static_cast<double>(r.timings.decode) / 1e6;
  const double decode_tps = r.completion_tokens > 1 && decode_s > 0 ? (r.completion_tokens - 1) / decode_s : 0.0;
  if (o.json) {
    nlohmann::json j = {{"model", r.model},
                        {"text", r.text},
                        {"finish", llm::to_string(r.finish)},
                        {"generated_weights", r.generated_weights},
                        {"prompt_tokens", r.prompt_tokens},
                        {"cached_tokens", r.cached_tokens},
                        {"completion_tokens", r.completion_tokens},
                        {"ttft_ms", r.timings.first_token / 1000.0},
                        {"prefill_ms", r.timings.prefill / 1000.0},
                        {"decode_tokens_per_s", decode_tps},
                        {"total_ms", r.timings.total / 1000.0}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  if (!stream) std::fputs(r.text.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fprintf(
      stderr, "[%s%s] prompt %d tokens, completion %d tokens (%s), TTFT %.1f ms, decode %.1f tok/s, total %.1f ms\n",
      r.model.c_str(), r.generated_weights ? ", generated weights: noise" : "", r.prompt_tokens, r.completion_tokens,
      llm::to_string(r.finish).data(), r.timings.first_token / 1000.0, decode_tps, r.timings.total / 1000.0);
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Generate text from one prompt with a GGUF model");
  auto o = std::make_shared<GenerateOptions>();
  cmd->add_option("--model,-m", o->model, "GGUF path, or a model name with --ladder")->required();
  cmd->add_option("--ladder", o->ladder, "Model ladder TOML ([[model]] name/path/size_class/...)");
  cmd->add_option("--prompt,-p", o->prompt, "Prompt text")->required();
  cmd->add_option("--system", o->system, "System prompt (cached as a reusable prefix)");
  cmd->add_flag("--chat", o->chat, "Render the prompt with the model's chat template");
  cmd->add_option("--max-tokens,-n", o->max_tokens, "Completion tokens at most");
  cmd->add_option("--temperature", o->sampling.temperature, "0 = greedy");
  cmd->add_option("--top-p", o->sampling.top_p, "Nucleus sampling mass (0, 1]");
  cmd->add_option("--top-k", o->sampling.top_k, "0 = off");
  cmd->add_option("--min-p", o->sampling.min_p, "[0, 1)");
  cmd->add_option("--repeat-penalty", o->sampling.repeat_penalty, "1 = off");
  auto* seed = cmd->add_option("--seed", o->seed, "Sampling seed (default: random)");
  cmd->add_option("--stop", o->stop, "Stop string (repeatable)");
  cmd->add_option("--context", o->context, "Context tokens per sequence");
  cmd->add_option("--threads", o->threads, "Threads (0 = all)");
  cmd->add_flag("--mmap", o->mmap, "Map the file instead of reading it into memory");
  cmd->add_flag("--no-stream", o->no_stream, "Print the text at the end instead of streaming");
  cmd->add_flag("--json", o->json, "Print the result as JSON");
  cmd->callback([o, seed] { run(*o, seed->count() > 0); });
}

}  // namespace ruvllm::cli
