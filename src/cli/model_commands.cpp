#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "commands.h"
#include "progress.h"
#include "ruvllm/llm.h"

namespace ruvllm::cli {
namespace {

nlohmann::json to_json(const llm::ModelInfo& i) {
  return {{"path", i.path},
          {"architecture", i.architecture},
          {"description", i.description},
          {"file_type", i.file_type},
          {"parameters", i.n_params},
          {"file_bytes", i.file_bytes},
          {"context_train", i.n_ctx_train},
          {"embedding_length", i.n_embd},
          {"layers", i.n_layer},
          {"vocab", i.n_vocab},
          {"tokenizer", i.tokenizer},
          {"pre_tokenizer", i.pre_tokenizer},
          {"hybrid", i.hybrid},
          {"generated_weights", i.generated_weights},
          {"chat_template", i.chat_template}};
}

}  // namespace

void add_model_commands(CLI::App& app) {
  auto* model = app.add_subcommand("model", "Model tools: synth, quantize, info");
  model->require_subcommand(1);

  auto* synth = model->add_subcommand("synth", "Write a GGUF with LFM2's exact shapes and generated weights");
  // Option values live in shared state owned by the callback, which lives as long as the app.
  struct SynthOptions {
    llm::SynthParams params;
    std::string arch = "lfm2";
  };
  auto so = std::make_shared<SynthOptions>();
  llm::SynthParams& sp = so->params;
  synth->add_option("--arch", so->arch, "Architecture (lfm2)")->check(CLI::IsMember({"lfm2"}));
  synth->add_option("--size", sp.size, "350m, 700m, 1.2b, 2.6b or tiny")->required();
  synth->add_option("--out,-o", sp.out, "Output GGUF path")->required();
  synth->add_option("--type", sp.type, "Matrix type: f32, f16, q8_0, q4_0 (use `model quantize` for K-quants)");
  synth->add_option("--seed", sp.seed, "Seed of the generated weights");
  synth->add_option("--vocab", sp.vocab_gguf, "llama-bpe vocabulary GGUF to cut the tokenizer from");
  synth->callback([so] {
    llm::SynthParams& sp = so->params;
    sp.progress = ProgressBar{};
    std::fprintf(stderr, "synth LFM2-%s (%s) -> %s\n", sp.size.c_str(), sp.type.c_str(), sp.out.c_str());
    const auto report = llm::synth_lfm2(sp);
    std::printf("wrote %s: %llu parameters (expected %llu), %llu bytes, vocab %d, generated weights\n", sp.out.c_str(),
                static_cast<unsigned long long>(report.n_params),
                static_cast<unsigned long long>(llm::lfm2_parameter_count(sp.size)),
                static_cast<unsigned long long>(report.file_bytes), report.n_vocab);
  });

  auto* quantize = model->add_subcommand("quantize", "Quantize a GGUF with llama.cpp (Q4_0, Q4_K_M, Q5_K_M, Q8_0)");
  struct QuantizeOptions {
    std::string in, out, type;
    int threads = 0;
  };
  auto qo = std::make_shared<QuantizeOptions>();
  quantize->add_option("in", qo->in, "Input GGUF")->required();
  quantize->add_option("out", qo->out, "Output GGUF")->required();
  quantize->add_option("type", qo->type, "Q4_0, Q4_K_M, Q5_K_M, Q8_0 or F16")->required();
  quantize->add_option("--threads", qo->threads, "Threads (0 = all)");
  quantize->callback([qo] {
    std::fprintf(stderr, "quantize %s -> %s (%s)\n", qo->in.c_str(), qo->out.c_str(), qo->type.c_str());
    llm::quantize_model(qo->in, qo->out, qo->type, qo->threads, ProgressBar{});
    const auto info = llm::inspect_model(qo->out);
    std::printf("wrote %s: %s, %llu bytes\n", qo->out.c_str(), info.file_type.c_str(),
                static_cast<unsigned long long>(info.file_bytes));
  });

  auto* info = model->add_subcommand("info", "Architecture, parameters, type, context, tokenizer, template");
  struct InfoOptions {
    std::string path;
    bool json = false;
  };
  auto io = std::make_shared<InfoOptions>();
  info->add_option("file", io->path, "GGUF file")->required();
  info->add_flag("--json", io->json, "Print JSON");
  info->callback([io] {
    const auto i = llm::inspect_model(io->path);
    if (io->json) {
      std::printf("%s\n", to_json(i).dump(2).c_str());
      return;
    }
    std::printf("file            %s (%llu bytes)\n", i.path.c_str(), static_cast<unsigned long long>(i.file_bytes));
    std::printf("architecture    %s%s\n", i.architecture.c_str(), i.hybrid ? " (hybrid: conv + attention)" : "");
    std::printf("description     %s\n", i.description.c_str());
    std::printf("parameters      %llu\n", static_cast<unsigned long long>(i.n_params));
    std::printf("type            %s\n", i.file_type.c_str());
    std::printf("context         %d (trained)\n", i.n_ctx_train);
    std::printf("layers / embd   %d / %d\n", i.n_layer, i.n_embd);
    std::printf("tokenizer       %s, pre %s, %d tokens\n", i.tokenizer.c_str(), i.pre_tokenizer.c_str(), i.n_vocab);
    std::printf("chat template   %s\n", i.chat_template.empty() ? "(none)" : i.chat_template.c_str());
    if (i.generated_weights) std::printf("weights         GENERATED (random): the text this model writes is noise\n");
  });
}

}  // namespace ruvllm::cli
