// The memory store options that every command touching memory shares (-c, --db, --words,
// --storage), resolved the way the pipeline resolves them, so that `ingest` writes the memory that
// `ask` and `serve` read.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "ruvllm/memory.h"

namespace ruvllm::cli {

struct StoreOptions {
  std::string config;  // "" = $RUVLLM_CONFIG, else ./ruvllm.toml when present, else the defaults
  std::string db;      // "" = the configuration's memory (memory.path, else memory.data_dir/memory.sqlite)
  std::string words;   // "" = the configuration's memory.word_vectors, else the default GloVe table
  std::string storage = "f16";
};

// read: a missing database is an error and nothing is created (search, stats, get, …);
// create: a missing database is created (ingest, memory add).
enum class Access { read, create };

void add_store_options(CLI::App* cmd, StoreOptions& o);
// The options with db and words filled from the configuration where they were not given.
StoreOptions resolve(StoreOptions o);
// Opens the store the options name with the GloVe embedder. Throws memory::Error: not_found for a
// missing database under Access::read (with what to do about it), invalid_argument for a bad
// --storage or configuration.
std::unique_ptr<memory::Memory> open_memory(const StoreOptions& o, Access access);

}  // namespace ruvllm::cli
