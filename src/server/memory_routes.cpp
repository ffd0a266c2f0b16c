// /v1/memory/... (nodes, edges, search, ingest, stats) and /v1/feedback: JSON to the pipeline's
// memory calls and back.
#include "impl.h"

#include <filesystem>
#include <fstream>

namespace ruvllm::server {

using namespace detail;

// ---- memory -------------------------------------------------------------------------------
memory::Node Server::Impl::node_from(const json& b) {
  memory::Node n;
  n.text = get_string(b, "text", true);
  if (n.text.empty()) throw HttpError(400, "'text' must not be empty", "text");
  n.id = get_string(b, "id", false);
  try {
    n.type = memory::parse_node_type(get_string(b, "type", false, "memory"));
  } catch (const Error& e) {
    throw http_error(e, "type");
  }
  n.source = get_string(b, "source", false, "user");
  n.title = get_string(b, "title", false);
  n.domain = get_string(b, "domain", false);
  n.language = get_string(b, "language", false);
  if (auto c = get_number(b, "confidence", 0, 1)) n.confidence = *c;
  if (b.contains("tags")) {
    if (!b["tags"].is_array()) throw HttpError(400, "'tags' must be an array of strings", "tags");
    for (const auto& t : b["tags"]) {
      if (!t.is_string()) throw HttpError(400, "'tags' must be an array of strings", "tags");
      n.tags.push_back(t.get<std::string>());
    }
  }
  if (b.contains("metadata")) {
    if (!b["metadata"].is_object()) throw HttpError(400, "'metadata' must be an object", "metadata");
    n.metadata = b["metadata"].dump();
  }
  if (b.contains("vector")) {
    if (!b["vector"].is_array()) throw HttpError(400, "'vector' must be an array of numbers", "vector");
    for (const auto& x : b["vector"]) {
      if (!x.is_number()) throw HttpError(400, "'vector' must be an array of numbers", "vector");
      n.vector.push_back(x.get<float>());
    }
  }
  return n;
}

void Server::Impl::add_node(const httplib::Request& req, httplib::Response& res) {
  memory::Node n = node_from(parse_body(req));
  const std::string id = memory_call([&] { return pipe.add_node(std::move(n)); });
  send_json(res, 201, {{"id", id}});
}

void Server::Impl::get_node(const httplib::Request& req, httplib::Response& res) {
  auto n = memory_call([&] { return pipe.memory().get(req.matches[1].str()); });
  if (!n) throw HttpError(404, "no node '" + req.matches[1].str() + "'", "id");
  send_json(res, 200, json::parse(memory::to_json(*n)));
}

void Server::Impl::delete_node(const httplib::Request& req, httplib::Response& res) {
  const std::string id = req.matches[1].str();
  if (!memory_call([&] { return pipe.remove_node(id); })) throw HttpError(404, "no node '" + id + "'", "id");
  send_json(res, 200, {{"id", id}, {"deleted", true}});
}

void Server::Impl::node_edges(const httplib::Request& req, httplib::Response& res) {
  const std::string id = req.matches[1].str();
  if (!memory_call([&] { return pipe.memory().get(id); })) throw HttpError(404, "no node '" + id + "'", "id");
  json data = json::array();
  for (const auto& e : memory_call([&] { return pipe.memory().edges(id); }))
    data.push_back(json::parse(memory::to_json(e)));
  send_json(res, 200, {{"data", data}});
}

void Server::Impl::add_edge(const httplib::Request& req, httplib::Response& res) {
  const json b = parse_body(req);
  memory::Edge e;
  e.src = get_string(b, "src", true);
  e.dst = get_string(b, "dst", true);
  e.rel = get_string(b, "rel", true);
  if (e.rel.empty()) throw HttpError(400, "'rel' must not be empty", "rel");
  if (auto w = get_number(b, "weight", 1e-9, 1e9)) e.weight = static_cast<float>(*w);
  if (auto c = get_number(b, "confidence", 0, 1)) e.confidence = static_cast<float>(*c);
  e.created_by = "user";
  for (const auto& end : {e.src, e.dst})
    if (!memory_call([&] { return pipe.memory().get(end); })) throw HttpError(404, "no node '" + end + "'", "src");
  const std::string id = memory_call([&] { return pipe.link(e); });
  send_json(res, 201, {{"id", id}});
}

void Server::Impl::delete_edge(const httplib::Request& req, httplib::Response& res) {
  const std::string id = req.matches[1].str();
  if (!memory_call([&] { return pipe.unlink(id); })) throw HttpError(404, "no edge '" + id + "'", "id");
  send_json(res, 200, {{"id", id}, {"deleted", true}});
}

void Server::Impl::search(const httplib::Request& req, httplib::Response& res) {
  const json b = parse_body(req);
  memory::SearchQuery q;
  q.text = get_string(b, "query", true);
  if (q.text.empty()) throw HttpError(400, "'query' must not be empty", "query");
  q.k = static_cast<std::size_t>(get_integer(b, "k", 1, 1000).value_or(10));
  try {
    q.mode = memory::parse_search_mode(get_string(b, "mode", false, "hybrid"));
  } catch (const Error& e) {
    throw http_error(e, "mode");
  }
  const auto result = memory_call([&] { return pipe.memory().search(q); });
  json hits = json::array();
  for (const auto& h : result.hits) {
    json hit = {{"id", h.id}, {"score", h.score}, {"dense_rank", h.dense_rank}, {"lexical_rank", h.lexical_rank}};
    if (auto n = pipe.memory().get(h.id)) {
      hit["title"] = n->title;
      hit["text"] = n->text;
      hit["type"] = memory::to_string(n->type);
    }
    hits.push_back(hit);
  }
  send_json(res, 200, {{"data", hits}, {"query_has_vector", result.query_has_vector}});
}

void Server::Impl::ingest(const httplib::Request& req, httplib::Response& res) {
  const json b = parse_body(req);
  if (!b.contains("documents") || !b["documents"].is_array() || b["documents"].empty())
    throw HttpError(400, "'documents' must be a non-empty array of {title, text}", "documents");
  // The ingest reads files: the documents go to a JSON Lines file in the data folder first.
  const auto path = std::filesystem::path(pipe.config().data_dir) /
                    ("ingest-" + std::to_string(Clock::now().time_since_epoch().count()) + ".jsonl");
  std::string lines;
  for (std::size_t i = 0; i < b["documents"].size(); ++i) {  // all checked before anything is written
    const json& d = b["documents"][i];
    const std::string where = "documents[" + std::to_string(i) + "]";
    if (!d.is_object() || !d.contains("text") || !d["text"].is_string())
      throw HttpError(400, where + " must be an object with a string 'text'", "documents");
    for (const char* key : {"title", "id"})
      if (d.contains(key) && !d[key].is_string())
        throw HttpError(400, where + "." + key + " must be a string", "documents");
    json row = {{"text", d["text"]}, {"title", d.value("title", "")}};
    if (d.contains("id")) row["id"] = d["id"];
    lines += row.dump() + '\n';
  }
  {
    std::ofstream f(path);
    f << lines;
    if (!f) {
      f.close();
      std::filesystem::remove(path);
      throw HttpError(500, "cannot write " + path.string());
    }
  }
  memory::IngestParams p;
  p.source = get_string(b, "source", false, "kb");
  memory::IngestReport rep;
  try {
    rep = memory_call([&] { return pipe.ingest({path.string()}, p); });
  } catch (...) {
    std::filesystem::remove(path);
    throw;
  }
  std::filesystem::remove(path);
  send_json(res, 200,
            {{"documents", rep.documents},
             {"chunks", rep.chunks},
             {"duplicates", rep.duplicates},
             {"near_duplicates", rep.near_duplicates},
             {"skipped", rep.skipped},
             {"edges", {{"follows", rep.follows}, {"same_topic", rep.same_topic}, {"mentions", rep.mentions}}}});
}

void Server::Impl::stats(const httplib::Request&, httplib::Response& res) {
  const auto s = pipe.memory().stats();
  send_json(res, 200,
            {{"nodes", s.nodes},
             {"edges", s.edges},
             {"vectors", s.vectors},
             {"embedder", s.embedder},
             {"dimension", s.dimension},
             {"database_bytes", s.database_bytes}});
}

void Server::Impl::feedback(const httplib::Request& req, httplib::Response& res) {
  const json b = parse_body(req);
  const std::string id = get_string(b, "request_id", true);
  const auto score = get_number(b, "score", 0, 1);
  const std::string label = get_string(b, "label", false);
  if (!score && label.empty()) throw HttpError(400, "feedback needs 'score' (0..1) or 'label'", "score");
  try {
    pipe.feedback(id, score, label);
  } catch (const Error& e) {
    throw http_error(e, "request_id");
  }
  send_json(res, 200, {{"request_id", id}, {"stored", true}});
}

}  // namespace ruvllm::server
