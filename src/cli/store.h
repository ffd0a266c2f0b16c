// The memory store options that every command touching memory shares (--db, --words, --storage).
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "ruvllm/memory.h"

namespace ruvllm::cli {

struct StoreOptions {
  std::string db = "ruvllm-memory.sqlite";
  std::string words;  // word-vector table; "" = the default GloVe table
  std::string storage = "f16";
};

void add_store_options(CLI::App* cmd, StoreOptions& o);
// Opens (or creates) the store with the GloVe embedder; throws memory::Error for a bad --storage.
std::unique_ptr<memory::Memory> open_memory(const StoreOptions& o);

}  // namespace ruvllm::cli
