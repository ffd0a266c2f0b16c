// The key table in RAM (key_meta): per node key what filters, search hits and expansions without
// rows need, so that they run without a statement; and the interned tags and domains it compares.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "store.h"

namespace ruvllm::memory {

using detail::Db;
using detail::KeyMeta;
using detail::Statement;
using detail::to_floats;

uint32_t Memory::Impl::intern(const std::string& s) {
  if (s.empty()) return 0;
  auto [it, inserted] = interned.try_emplace(s, static_cast<uint32_t>(interned.size() + 1));
  return it->second;
}

void Memory::Impl::set_key_meta(uint64_t key, const Node& node) {
  if (key >= key_meta.size()) key_meta.resize(std::max<std::size_t>(key + 1, key_meta.size() * 3 / 2 + 16));
  KeyMeta& m = key_meta[key];
  m.id = node.id;
  key_of_id[node.id] = key;
  m.live = true;
  m.type = static_cast<uint8_t>(node.type);
  m.domain = intern(node.domain);
  m.tags.clear();
  for (const auto& t : node.tags) m.tags.push_back(intern(t));
  std::sort(m.tags.begin(), m.tags.end());
  m.valid_from = node.valid_from.value_or(INT64_MIN);
  m.valid_to = node.valid_to.value_or(INT64_MAX);
  m.timestamp_ms = node.timestamp_ms;
  m.confidence = node.confidence;
  if (params.vectors_in_memory) m.vector = node.vector;
}

Node Memory::Impl::scoring_facts(uint64_t key, std::vector<float> vector) const {
  const KeyMeta& m = key_meta[key];
  Node n;
  n.id = m.id;
  n.type = static_cast<NodeType>(m.type);
  n.timestamp_ms = m.timestamp_ms;
  n.confidence = m.confidence;
  if (m.valid_from != INT64_MIN) n.valid_from = m.valid_from;
  if (m.valid_to != INT64_MAX) n.valid_to = m.valid_to;
  n.vector = std::move(vector);
  return n;
}

void Memory::Impl::load_key_meta(Db& db) {
  Statement s(db,
              params.vectors_in_memory
                  ? "SELECT n.key, type, domain, tags, valid_from, valid_to, id, timestamp_ms, confidence, "
                    "v.data FROM nodes n LEFT JOIN vectors v ON v.key = n.key"
                  : "SELECT key, type, domain, tags, valid_from, valid_to, id, timestamp_ms, confidence FROM nodes");
  std::unique_lock lock(meta_mutex);
  while (s.step()) {
    Node n;
    n.id = s.text(6);
    n.timestamp_ms = s.integer(7);
    n.confidence = s.real(8);
    if (params.vectors_in_memory && !s.is_null(9)) n.vector = to_floats(s.blob(9));
    n.type = parse_node_type(s.text(1));
    n.domain = s.text(2);
    for (const auto& t : nlohmann::json::parse(s.text(3))) n.tags.push_back(t.get<std::string>());
    if (!s.is_null(4)) n.valid_from = s.integer(4);
    if (!s.is_null(5)) n.valid_to = s.integer(5);
    set_key_meta(static_cast<uint64_t>(s.integer(0)), n);
  }
}

std::optional<uint64_t> Memory::Impl::key_of(Db& db, std::string_view id) const {
  Statement s(db, "SELECT key FROM nodes WHERE id = ?");
  s.bind(1, id);
  if (s.step()) return static_cast<uint64_t>(s.integer(0));
  return std::nullopt;
}

bool Memory::Impl::passes(const Filter& f, const KeyMeta& m, const std::vector<uint32_t>& tag_ids,
                          uint32_t domain_id) const {
  if (!m.live) return false;
  if (!f.types.empty() && std::find(f.types.begin(), f.types.end(), static_cast<NodeType>(m.type)) == f.types.end()) {
    return false;
  }
  if (!f.domain.empty() && m.domain != domain_id) return false;
  for (uint32_t t : tag_ids) {
    if (!std::binary_search(m.tags.begin(), m.tags.end(), t)) return false;
  }
  if (f.valid_at && !(m.valid_from <= *f.valid_at && *f.valid_at < m.valid_to)) return false;
  return true;
}

std::optional<std::function<bool(uint64_t)>> Memory::Impl::filter_predicate(const Filter& filter) const {
  std::vector<uint32_t> tag_ids;
  uint32_t domain_id = 0;
  for (const auto& t : filter.tags) {
    auto it = interned.find(t);
    if (it == interned.end()) return std::nullopt;
    tag_ids.push_back(it->second);
  }
  if (!filter.domain.empty()) {
    auto it = interned.find(filter.domain);
    if (it == interned.end()) return std::nullopt;
    domain_id = it->second;
  }
  return [this, &filter, tag_ids = std::move(tag_ids), domain_id](uint64_t key) {
    return key < key_meta.size() && passes(filter, key_meta[key], tag_ids, domain_id);
  };
}

}  // namespace ruvllm::memory
