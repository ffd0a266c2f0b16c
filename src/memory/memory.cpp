// Memory: SQLite (source of truth) + HNSW (derived, caught up on open) + FTS5 + graph + dedup.
// This file: construction and close, and the small public methods (stats, notes, checkpoint,
// vacuum); store.h says where the rest lives.
#include <sys/stat.h>

#include <cstdio>

#include "store.h"

namespace ruvllm::memory {

using detail::Db;
using detail::require_utf8;
using detail::Statement;

namespace {

std::size_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::size_t>(st.st_size) : 0;
}

}  // namespace

void Memory::Impl::warn(const std::string& message) const {
  if (params.warn) {
    params.warn(message);
  } else {
    std::fprintf(stderr, "ruvllm: memory: warning: %s\n", message.c_str());
  }
}

Memory::Memory(MemoryParams params) : impl_(std::make_unique<Impl>()) {
  impl_->params = std::move(params);
  impl_->open();
}

Memory::~Memory() {
  try {
    if (impl_ && impl_->ann && impl_->unsaved > 0) impl_->save_index();
  } catch (const std::exception& e) {
    impl_->warn(std::string("could not save the index on close (it is rebuilt on open): ") + e.what());
  }
}

const embed::Embedder* Memory::embedder() const { return impl_->params.embedder.get(); }

std::optional<std::string> Memory::note(std::string_view key) const {
  Impl::Reader reader(*impl_);
  Statement s(*reader, "SELECT value FROM notes WHERE key = ?");
  s.bind(1, key);
  if (s.step()) return s.text(0);
  return std::nullopt;
}

void Memory::set_note(std::string_view key, std::string_view value) {
  require_utf8(key, "note key");
  require_utf8(value, "note value");
  std::lock_guard lock(impl_->write_mutex);
  Statement(*impl_->writer,
            "INSERT INTO notes(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
      .bind(1, key)
      .bind(2, value)
      .run();
}

Stats Memory::stats() const {
  Impl::Reader reader(*impl_);
  const auto count = [&](std::string_view sql) {
    Statement s(*reader, sql);
    s.step();
    return static_cast<std::size_t>(s.integer(0));
  };
  Stats st;
  st.nodes = count("SELECT count(*) FROM nodes");
  st.vectors = count("SELECT count(*) FROM vectors");
  st.edges = count("SELECT count(*) FROM edges");
  st.lexical_rows = count("SELECT count(*) FROM fts");
  st.indexed = impl_->ann->size();
  st.embedder = impl_->space;
  st.path = impl_->params.path;
  st.dimension = impl_->dimension;
  st.index_bytes = impl_->ann->memory_bytes();
  st.database_bytes = file_size(impl_->params.path) + file_size(impl_->params.path + "-wal");
  return st;
}

void Memory::checkpoint() {
  impl_->save_index();
  std::lock_guard lock(impl_->write_mutex);
  impl_->writer->exec("PRAGMA wal_checkpoint(PASSIVE)");
}

void Memory::vacuum() {
  impl_->save_index();
  std::lock_guard lock(impl_->write_mutex);
  Db& db = *impl_->writer;
  db.exec("INSERT INTO fts(fts) VALUES ('rebuild')");
  db.exec("VACUUM");
  db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
}

}  // namespace ruvllm::memory
