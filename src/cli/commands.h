// The `ruvllm` program's subcommands, each group registered on the CLI11 app by its own file.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

namespace ruvllm::cli {

void add_model_commands(CLI::App& app);      // model synth | quantize | info
void add_generate_command(CLI::App& app);    // generate: one prompt through the engine
void add_memory_commands(CLI::App& app);     // ingest; memory stats | search | get | add | link | delete | vacuum
void add_attention_commands(CLI::App& app);  // attention train
void add_router_commands(CLI::App& app);     // router train | eval | calibrate | inspect
void add_pipeline_commands(CLI::App& app);   // config check | show, ask, chat, serve

// The configuration file a command reads: `given`, else $RUVLLM_CONFIG, else ./ruvllm.toml when it
// exists; nullopt when there is none.
std::optional<std::string> find_config(const std::string& given);

}  // namespace ruvllm::cli
