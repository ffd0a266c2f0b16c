// ruvllm/config.h — the configuration file, ruvllm.toml: one TOML table per room, every key with a
// default (docs/config.md lists them), environment overrides RUVLLM_<SECTION>_<KEY>.
//
// The file is read here, once, into each room's own parameter struct: the pipeline's Config (with
// the [[model]] ladder, read by llm::read_ladder) and the server's ServerConfig. Every scalar key is
// one row of one table, so that the file, the environment and `ruvllm config check` share one list
// and every error names its key.
#pragma once

#include <string>
#include <vector>

#include "ruvllm/pipeline.h"
#include "ruvllm/server.h"

namespace ruvllm::config {

using pipeline::ConfigIssue;

// What ruvllm.toml configures. A Settings is a pipeline::Config (pass it to Pipeline as one) with
// the [server] table beside it.
struct Settings : pipeline::Config {
  server::ServerConfig server;
};

// What a command reads the file for. `memory`: the memory commands (ingest, memory …), which need
// the store's path and embedder but no model, so a file without [[model]] tables is fine.
enum class Scope { everything, memory };

// Reads `path` ("" = defaults only), then the environment overrides (for example
// RUVLLM_SERVER_PORT=9000). Relative paths resolve against the file's folder. Throws Error
// (invalid_argument) listing every issue, each with its key.
Settings load(const std::string& path, Scope scope = Scope::everything);
// Everything load() would complain about, plus what only the disk can say
// (pipeline::check_config). Empty = fine.
std::vector<ConfigIssue> check(const std::string& path);
// Every key with its default, commented: a file that load() reads back to the defaults.
std::string defaults_toml();

}  // namespace ruvllm::config
