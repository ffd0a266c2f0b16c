// Node rows: reading one from a statement, and get() and get_many() by id.
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "store.h"

namespace ruvllm::memory {

using detail::require_utf8;
using detail::Statement;
using detail::to_floats;

Node Memory::Impl::read_node(const Statement& s) {
  Node n;
  n.id = s.text(1);
  n.type = parse_node_type(s.text(2));
  n.source = s.text(3);
  n.title = s.text(4);
  n.text = s.text(5);
  n.timestamp_ms = s.integer(6);
  if (const std::string tags = s.text(7); tags != "[]")  // most nodes: no tags, no parse
    for (const auto& t : nlohmann::json::parse(tags)) n.tags.push_back(t.get<std::string>());
  n.domain = s.text(8);
  n.language = s.text(9);
  n.version = static_cast<int>(s.integer(10));
  n.confidence = s.real(11);
  if (!s.is_null(12)) n.valid_from = s.integer(12);
  if (!s.is_null(13)) n.valid_to = s.integer(13);
  n.metadata = s.text(14);
  return n;
}

std::optional<Node> Memory::get(std::string_view id, bool with_vector) const {
  Impl::Reader reader(*impl_);
  Statement s(*reader, "SELECT " + std::string(Impl::kNodeColumns) + " FROM nodes n WHERE n.id = ?",
              Statement::Cached{});
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  Node n = Impl::read_node(s);
  if (with_vector) {
    Statement v(*reader, "SELECT data FROM vectors WHERE key = ?", Statement::Cached{});
    v.bind(1, s.integer(0));
    if (v.step()) n.vector = to_floats(v.blob(0));
  }
  return n;
}

std::vector<std::optional<Node>> Memory::get_many(const std::vector<std::string>& ids, bool with_vector) const {
  std::vector<std::optional<Node>> out(ids.size());
  if (ids.empty()) return out;
  for (const auto& id : ids) require_utf8(id, "node id");
  // By id in the store, as get() reads one: the ids as one JSON array (one SQL text for any list).
  std::unordered_map<std::string_view, std::vector<std::size_t>> positions;  // an id asked twice gets two copies
  for (std::size_t i = 0; i < ids.size(); ++i) positions[ids[i]].push_back(i);
  Impl::Reader reader(*impl_);
  Statement s(*reader,
              with_vector ? "SELECT " + std::string(Impl::kNodeColumns) +
                                ", v.data FROM nodes n LEFT JOIN vectors v ON v.key = n.key "
                                "WHERE n.id IN (SELECT value FROM json_each(?))"
                          : "SELECT " + std::string(Impl::kNodeColumns) +
                                " FROM nodes n WHERE n.id IN (SELECT value FROM json_each(?))",
              Statement::Cached{});
  s.bind(1, nlohmann::json(ids).dump());
  while (s.step()) {
    Node n = Impl::read_node(s);
    if (with_vector && !s.is_null(15)) n.vector = to_floats(s.blob(15));
    const auto& at = positions.at(n.id);
    for (std::size_t k = 1; k < at.size(); ++k) out[at[k]] = n;
    out[at.front()] = std::move(n);
  }
  return out;
}

}  // namespace ruvllm::memory
