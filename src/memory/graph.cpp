// The graph: the adjacency lists in RAM that expansions walk (loaded on open, reloaded for the
// nodes each edge change touches), the public edge reads and changes, and expand().
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <unordered_map>

#include "store.h"

namespace ruvllm::memory {

using detail::Db;
using detail::Statement;
using detail::to_floats;

namespace {

// Keys as a JSON array, bound to `IN (SELECT value FROM json_each(?))`: one SQL text for any list,
// so the statement is prepared once per connection instead of once per list.
std::string key_array(const std::vector<uint64_t>& keys) {
  std::string out = "[";
  char buf[24];
  for (uint64_t k : keys) {
    if (out.size() > 1) out += ',';
    out.append(buf,
               static_cast<std::size_t>(std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(k))));
  }
  return out += ']';
}

// Steps a statement ending in `RETURNING src, dst` to completion; the endpoints it touched.
std::vector<uint64_t> touched_ends(Statement& s) {
  std::vector<uint64_t> ends;
  while (s.step()) {
    ends.push_back(static_cast<uint64_t>(s.integer(0)));
    ends.push_back(static_cast<uint64_t>(s.integer(1)));
  }
  s.reset();
  return ends;
}

constexpr std::string_view kEdgeSelect =
    "SELECT e.id, s.id, d.id, e.rel, e.weight, e.timestamp_ms, e.created_by, e.confidence, e.src, e.dst "
    "FROM edges e JOIN nodes s ON s.key = e.src JOIN nodes d ON d.key = e.dst ";

Edge read_edge(const Statement& s) {
  return Edge{s.text(0),
              s.text(1),
              s.text(2),
              s.text(3),
              static_cast<float>(s.real(4)),
              s.integer(5),
              s.text(6),
              static_cast<float>(s.real(7))};
}

}  // namespace

// ---- the adjacency in RAM ----------------------------------------------------------------------

void Memory::Impl::forget_edge_ids(const std::vector<Adjacent>& list) {
  for (const Adjacent& a : list)
    if (a.out) edge_ids[a.edge] = std::string();
}

void Memory::Impl::load_adjacency(Db& db, const std::vector<uint64_t>& keys) {
  auto slot = [&](uint64_t key) -> std::vector<Adjacent>& {
    if (key >= adjacency.size()) adjacency.resize(std::max<std::size_t>(key + 1, adjacency.size() * 3 / 2 + 16));
    return adjacency[key];
  };
  auto intern = [&](std::string name) {
    const auto [it, added] = graph_names.try_emplace(name, static_cast<uint32_t>(graph_name_of.size()));
    if (added) graph_name_of.push_back(std::move(name));
    return it->second;
  };
  auto add = [&](uint64_t node, const Statement& s, bool out) {
    const auto edge = static_cast<uint64_t>(s.integer(0));
    slot(node).push_back(Adjacent{static_cast<uint64_t>(s.integer(out ? 2 : 1)), edge, s.integer(5),
                                  static_cast<float>(s.real(4)), static_cast<float>(s.real(7)), intern(s.text(3)),
                                  intern(s.text(6)), out});
    if (edge >= edge_ids.size()) edge_ids.resize(std::max<std::size_t>(edge + 1, edge_ids.size() * 3 / 2 + 16));
    if (out) edge_ids[edge] = s.text(8);
  };
  constexpr const char* kColumns =
      "SELECT key, src, dst, rel, weight, timestamp_ms, created_by, confidence, id FROM edges";
  std::vector<uint64_t> touched;
  if (keys.empty()) {
    adjacency.clear();
    edge_ids.clear();
    Statement s(db, kColumns);
    while (s.step()) {
      add(static_cast<uint64_t>(s.integer(1)), s, true);
      add(static_cast<uint64_t>(s.integer(2)), s, false);
    }
    for (uint64_t k = 0; k < adjacency.size(); ++k) touched.push_back(k);
  } else {
    Statement out(db, std::string(kColumns) + " WHERE src = ?");
    Statement in(db, std::string(kColumns) + " WHERE dst = ?");
    for (uint64_t key : keys) {
      forget_edge_ids(slot(key));  // the edges that still exist get theirs back below
      slot(key).clear();
      out.bind(1, static_cast<int64_t>(key));
      while (out.step()) add(key, out, true);
      out.reset();
      in.bind(1, static_cast<int64_t>(key));
      while (in.step()) add(key, in, false);
      in.reset();
      touched.push_back(key);
    }
  }
  for (uint64_t key : touched) {
    auto& list = adjacency[key];
    std::sort(list.begin(), list.end(), [](const Adjacent& a, const Adjacent& b) {
      if (a.weight != b.weight) return a.weight > b.weight;
      if (a.timestamp_ms != b.timestamp_ms) return a.timestamp_ms > b.timestamp_ms;
      return a.edge < b.edge;
    });
    list.shrink_to_fit();
  }
}

void Memory::Impl::refresh_adjacency(Db& db, std::vector<uint64_t> keys, const std::vector<uint64_t>& removed) {
  std::unique_lock lock(graph_mutex);
  for (uint64_t key : removed) {
    if (key >= adjacency.size()) continue;
    for (const Adjacent& a : adjacency[key]) keys.push_back(a.other);  // its neighbours lose the edges
    forget_edge_ids(adjacency[key]);
    adjacency[key].clear();
    adjacency[key].shrink_to_fit();
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  keys.erase(std::remove_if(keys.begin(), keys.end(),
                            [&](uint64_t k) { return std::find(removed.begin(), removed.end(), k) != removed.end(); }),
             keys.end());
  if (!keys.empty()) load_adjacency(db, keys);
}

// ---- edges -------------------------------------------------------------------------------------

std::string Memory::link(Edge edge) {
  impl_->check_edge(edge);
  std::lock_guard lock(impl_->write_mutex);
  std::vector<uint64_t> ends;
  std::string id = impl_->upsert_edge(*impl_->writer, edge, ends);
  impl_->refresh_adjacency(*impl_->writer, std::move(ends));
  return id;
}

bool Memory::unlink(std::string_view edge_id) {
  std::lock_guard lock(impl_->write_mutex);
  Statement s(*impl_->writer, "DELETE FROM edges WHERE id = ? RETURNING src, dst");
  s.bind(1, edge_id);
  auto ends = touched_ends(s);
  if (ends.empty()) return false;
  impl_->refresh_adjacency(*impl_->writer, std::move(ends));
  return true;
}

std::vector<Edge> Memory::edges(std::string_view node_id, Direction direction, std::string_view rel) const {
  Impl::Reader reader(*impl_);
  const auto key = impl_->key_of(*reader, node_id);
  if (!key) throw Error(ErrorCode::not_found, "unknown node " + std::string(node_id));
  std::vector<Edge> out;
  const auto run = [&](std::string_view column) {
    Statement s(*reader, std::string(kEdgeSelect) + "WHERE e." + std::string(column) + " = ?" +
                             (rel.empty() ? "" : " AND e.rel = ?") + " ORDER BY e.weight DESC, e.timestamp_ms DESC");
    s.bind(1, static_cast<int64_t>(*key));
    if (!rel.empty()) s.bind(2, rel);
    while (s.step()) out.push_back(read_edge(s));
  };
  if (direction != Direction::in) run("src");
  if (direction != Direction::out) run("dst");
  return out;
}

void Memory::set_weight(std::string_view edge_id, float weight) {
  if (!std::isfinite(weight) || !(weight > 0)) throw Error("edge weight must be a positive number");
  std::lock_guard lock(impl_->write_mutex);
  Statement s(*impl_->writer, "UPDATE edges SET weight = ? WHERE id = ? RETURNING src, dst");
  s.bind(1, static_cast<double>(weight)).bind(2, edge_id);
  auto ends = touched_ends(s);
  if (ends.empty()) throw Error(ErrorCode::not_found, "unknown edge " + std::string(edge_id));
  impl_->refresh_adjacency(*impl_->writer, std::move(ends));
}

std::size_t Memory::prune_edges(float min_weight, int64_t older_than_ms) {
  std::lock_guard lock(impl_->write_mutex);
  Statement s(*impl_->writer, "DELETE FROM edges WHERE weight < ? AND timestamp_ms < ? RETURNING src, dst");
  s.bind(1, static_cast<double>(min_weight)).bind(2, older_than_ms);
  auto ends = touched_ends(s);
  const std::size_t deleted = ends.size() / 2;
  if (deleted) impl_->refresh_adjacency(*impl_->writer, std::move(ends));
  return deleted;
}

// ---- expansion ---------------------------------------------------------------------------------

// The nodes an expansion chose: seeds first, then by hop.
struct Memory::Impl::Walk {
  std::vector<uint64_t> keys;
  std::vector<int> depth;                              // per key
  std::unordered_map<uint64_t, std::size_t> position;  // of each key in `keys`
};

struct Memory::Impl::InsideEdge {
  uint64_t key = 0;
  Edge edge;                     // src and dst left empty: named from the node rows once both are in
  std::size_t src = 0, dst = 0;  // positions in `keys`
};

Memory::Impl::Walk Memory::Impl::walk(const std::vector<std::string>& seeds, const ExpandParams& params) const {
  Walk w;
  {
    std::shared_lock lock(meta_mutex);
    for (const auto& id : seeds) {
      const auto found = key_of_id.find(id);
      if (found == key_of_id.end()) throw Error("expand: unknown seed node " + id);
      const uint64_t key = found->second;
      if (w.position.count(key) || w.keys.size() >= params.max_nodes) continue;
      w.position[key] = w.keys.size();
      w.keys.push_back(key);
      w.depth.push_back(0);
    }
  }
  std::shared_lock lock(graph_mutex);
  std::vector<uint32_t> wanted;  // relation filter, interned; an unknown name matches nothing
  for (const auto& r : params.relations)
    if (auto it = graph_names.find(r); it != graph_names.end()) wanted.push_back(it->second);
  const bool any_relation = params.relations.empty();
  static const std::vector<Adjacent> kNone;
  auto neighbours = [&](uint64_t key) -> const std::vector<Adjacent>& {
    return key < adjacency.size() ? adjacency[key] : kNone;
  };
  // Both directions, heaviest then newest first, within the degree budget.
  std::size_t frontier_begin = 0;
  for (int hop = 1; hop <= params.hops && w.keys.size() < params.max_nodes; ++hop) {
    const std::size_t frontier_end = w.keys.size();
    for (std::size_t i = frontier_begin; i < frontier_end && w.keys.size() < params.max_nodes; ++i) {
      std::size_t followed = 0;
      for (const auto& a : neighbours(w.keys[i])) {
        if (followed >= params.degree_budget || w.keys.size() >= params.max_nodes) break;
        if (a.weight < params.min_weight) continue;
        if (!any_relation && std::find(wanted.begin(), wanted.end(), a.rel) == wanted.end()) continue;
        ++followed;
        if (w.position.count(a.other)) continue;
        w.position[a.other] = w.keys.size();
        w.keys.push_back(a.other);
        w.depth.push_back(hop);
      }
    }
    frontier_begin = frontier_end;
  }
  return w;
}

std::vector<Memory::Impl::InsideEdge> Memory::Impl::inside_edges(const Walk& walk) const {
  std::vector<InsideEdge> inside;
  std::shared_lock lock(graph_mutex);
  const auto& names = graph_name_of;
  for (std::size_t i = 0; i < walk.keys.size(); ++i) {
    if (walk.keys[i] >= adjacency.size()) continue;
    for (const auto& a : adjacency[walk.keys[i]]) {
      if (!a.out) continue;
      const auto other = walk.position.find(a.other);
      if (other == walk.position.end()) continue;
      inside.push_back(
          {a.edge,
           Edge{edge_ids[a.edge], {}, {}, names[a.rel], a.weight, a.timestamp_ms, names[a.created_by], a.confidence}, i,
           other->second});
    }
  }
  std::sort(inside.begin(), inside.end(), [](const InsideEdge& a, const InsideEdge& b) { return a.key < b.key; });
  return inside;
}

void Memory::Impl::scoring_facts_from_ram(const Walk& walk, std::vector<Node>& nodes) const {
  std::shared_lock lock(meta_mutex);
  for (std::size_t i = 0; i < walk.keys.size(); ++i)
    if (walk.keys[i] < key_meta.size() && key_meta[walk.keys[i]].live)  // else: gone, id stays empty
      nodes[i] = scoring_facts(walk.keys[i], key_meta[walk.keys[i]].vector);
}

void Memory::Impl::scoring_facts_from_store(const Walk& walk, std::vector<Node>& nodes) const {
  // Vectors first, then the RAM facts: a node removed between the two has no live entry and
  // leaves, rather than staying without its vector.
  std::vector<std::vector<float>> vectors(walk.keys.size());
  {
    Reader reader(*this);
    Statement rows(*reader, "SELECT key, data FROM vectors WHERE key IN (SELECT value FROM json_each(?))",
                   Statement::Cached{});
    rows.bind(1, key_array(walk.keys));
    while (rows.step()) vectors[walk.position.at(static_cast<uint64_t>(rows.integer(0)))] = to_floats(rows.blob(1));
  }
  std::shared_lock lock(meta_mutex);
  for (std::size_t i = 0; i < walk.keys.size(); ++i)
    if (walk.keys[i] < key_meta.size() && key_meta[walk.keys[i]].live)
      nodes[i] = scoring_facts(walk.keys[i], std::move(vectors[i]));
}

void Memory::Impl::full_rows_from_store(const Walk& walk, std::vector<Node>& nodes) const {
  Reader reader(*this);  // one statement: no read transaction needed around it
  Statement rows(*reader,
                 "SELECT " + std::string(kNodeColumns) +
                     ", v.data FROM nodes n LEFT JOIN vectors v ON v.key = n.key "
                     "WHERE n.key IN (SELECT value FROM json_each(?))",
                 Statement::Cached{});
  rows.bind(1, key_array(walk.keys));
  while (rows.step()) {
    Node n = read_node(rows);
    if (!rows.is_null(15)) n.vector = to_floats(rows.blob(15));
    nodes[walk.position.at(static_cast<uint64_t>(rows.integer(0)))] = std::move(n);
  }
}

// A node removed after the walk has no row (a stored id is never empty): it leaves the subgraph,
// and so do its edges.
void Memory::Impl::keep_live(Subgraph& g, std::vector<InsideEdge>& inside) {
  constexpr std::size_t kGone = SIZE_MAX;
  std::vector<std::size_t> moved_to(g.nodes.size(), kGone);
  std::size_t live = 0;
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    if (g.nodes[i].id.empty()) continue;
    moved_to[i] = live;
    if (live != i) {
      g.nodes[live] = std::move(g.nodes[i]);
      g.depth[live] = g.depth[i];
    }
    ++live;
  }
  g.nodes.resize(live);
  g.depth.resize(live);
  g.edges.reserve(inside.size());
  for (InsideEdge& r : inside) {
    const std::size_t src = moved_to[r.src], dst = moved_to[r.dst];
    if (src == kGone || dst == kGone) continue;
    r.edge.src = g.nodes[src].id;
    r.edge.dst = g.nodes[dst].id;
    g.edges.push_back(std::move(r.edge));
  }
}

Subgraph Memory::expand(const std::vector<std::string>& seeds, const ExpandParams& params) const {
  if (params.hops < 0 || params.hops > 8) throw Error("expand: hops must be in [0, 8]");
  if (params.max_nodes == 0) throw Error("expand: max_nodes must be positive");
  // The walk, and the edges among the nodes it chose, run on the graph in RAM; node rows come from
  // the store.
  const Impl::Walk walk = impl_->walk(seeds, params);
  Subgraph g;
  g.depth = walk.depth;
  g.nodes.resize(walk.keys.size());
  if (walk.keys.empty()) return g;
  // The edges among the chosen nodes are built on the sidecar while this thread reads the node rows
  // (three strings per edge cost about as much as the rows; see common/sidecar.h). Their ends' ids
  // come from the node rows once both are in.
  std::vector<Impl::InsideEdge> inside;
  auto collect_edges = [&] { inside = impl_->inside_edges(walk); };
  if (!params.full_rows && impl_->params.vectors_in_memory) {
    // All from RAM: no statement for the sidecar to hide, and handing it the edges costs a wake.
    collect_edges();
    impl_->scoring_facts_from_ram(walk, g.nodes);
  } else {
    common::Sidecar::Task edge_task(impl_->sidecar, collect_edges);
    if (params.full_rows) {
      impl_->full_rows_from_store(walk, g.nodes);
    } else {
      impl_->scoring_facts_from_store(walk, g.nodes);
    }
    edge_task.get();
  }
  Impl::keep_live(g, inside);
  return g;
}

}  // namespace ruvllm::memory
