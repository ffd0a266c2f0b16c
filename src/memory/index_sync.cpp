// The derived indexes kept in step with SQLite: the HNSW index (loaded and caught up on open by
// replaying every change numbered after the one its file records, or rebuilt; saved on close, on
// checkpoint and every `autosave_every` changes) and the lexical index in RAM (built on open).
// write.cpp's apply() brings both up to each committed change.
#include <cstdio>

#include "store.h"

namespace ruvllm::memory {

using detail::AnnIndex;
using detail::Db;
using detail::Statement;
using detail::to_floats;

void Memory::Impl::load_lexical_index(Db& db) {
  tokenizer = std::make_shared<detail::FtsTokenizer>(db);
  lexical_index = std::make_unique<detail::LexicalIndex>(tokenizer);
  Statement s(db, "SELECT key, title, text FROM nodes ORDER BY key");
  while (s.step()) lexical_index->add(static_cast<uint64_t>(s.integer(0)), s.text(1), s.text(2));
}

std::size_t Memory::Impl::stored_vectors(Db& db) {
  Statement s(db, "SELECT count(*) FROM vectors");
  s.step();
  return static_cast<std::size_t>(s.integer(0));
}

void Memory::Impl::open_index(Db& db) {
  uint64_t indexed_seq = 0;
  std::string why;
  auto loaded = AnnIndex::load(index_path, dimension, params.index, indexed_seq, why);
  const std::size_t expected = stored_vectors(db);
  if (loaded && indexed_seq <= seq) {
    ann = std::make_unique<AnnIndex>(std::move(*loaded));
    // Replay what the store committed after the index was saved.
    std::size_t replayed = 0;
    Statement added(db, "SELECT key, data FROM vectors WHERE seq > ?");
    added.bind(1, static_cast<int64_t>(indexed_seq));
    while (added.step()) {
      ann->add(static_cast<uint64_t>(added.integer(0)), to_floats(added.blob(1)));
      ++replayed;
    }
    Statement removed(db, "SELECT key FROM removed WHERE seq > ?");
    removed.bind(1, static_cast<int64_t>(indexed_seq));
    while (removed.step()) {
      ann->remove(static_cast<uint64_t>(removed.integer(0)));
      ++replayed;
    }
    unsaved = replayed;
    if (ann->size() == expected) return;
    why = "index holds " + std::to_string(ann->size()) + " vectors, the store " + std::to_string(expected);
  } else if (loaded) {
    why = "index is newer than the store";
  }
  if (expected > 0 || why != "no index file") {
    warn("rebuilding the vector index of " + params.path + " from the store (" + why + ")");
  }
  ann = std::make_unique<AnnIndex>(dimension, params.index);
  Statement all(db, "SELECT key, data FROM vectors");
  while (all.step()) ann->add(static_cast<uint64_t>(all.integer(0)), to_floats(all.blob(1)));
  unsaved = expected + 1;  // save on close even when empty, so that the next open finds a file
}

void Memory::Impl::save_index() {
  std::lock_guard save_lock(save_mutex);
  uint64_t at;
  {
    // write_mutex first stops new changes (see change()); the exclusive in_flight then waits for
    // committed ones to reach the index, so that `at` never claims a change the index lacks.
    // Changes committed after this point are replayed on open, whether or not the save sees them.
    std::lock_guard lock(write_mutex);
    std::unique_lock flight(in_flight);
    at = seq;
    unsaved = 0;
  }
  if (index_stale) {  // an index update failed after its commit: let the next open rebuild
    std::remove(index_path.c_str());
    return;
  }
  ann->save(index_path, at);
}

void Memory::Impl::note_changes(std::size_t n) {
  if (!params.autosave_every || (unsaved += n) < params.autosave_every) return;
  try {
    save_index();
  } catch (const std::exception& e) {  // the change itself is committed: report, retry later
    unsaved += n;
    warn(std::string("could not save the vector index (it is caught up on open): ") + e.what());
  }
}

}  // namespace ruvllm::memory
