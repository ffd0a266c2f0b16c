// Ingest: files → documents → chunks with follows / part_of / same_topic / mentions edges.
//
// Idempotent and resumable by construction: node ids are derived from the document's content, a
// document's nodes and structural edges land in one transaction, and a note marks a document done
// only after its similarity and mention edges exist. A rerun skips done documents and finishes the
// edges of a document that was interrupted between the two steps.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "common/hash.h"
#include "common/json_depth.h"
#include "common/utf8.h"
#include "common/uuid.h"
#include "ruvllm/memory.h"
#include "text_match.h"

namespace ruvllm::memory {
namespace {

struct Document {
  std::string source_id, title, text, origin;  // origin: "file:line" for messages
};

// A UUID v8 derived from content (common/uuid.h), so that the same document always gets the same
// node ids.
std::string content_id(std::string_view a, std::string_view b, uint64_t salt) {
  const uint64_t hi = common::fnv1a(b, common::fnv1a(a, common::kFnvOffset ^ salt) ^ 0xff);
  const uint64_t lo = common::fnv1a(a, common::fnv1a(b, 0x84222325cbf29ce4ull ^ (salt * 0x9e3779b97f4a7c15ull)) ^ 0xfe);
  return common::uuid_v8(hi, lo);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::io, path + ": cannot read");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

using common::require_utf8;

// Whole files are validated before anything is written, so a bad line rejects its file untouched.
std::vector<Document> read_documents(const std::string& path, std::size_t& empty) {
  const std::filesystem::path p(path);
  const std::string ext = p.extension().string();
  const std::string content = read_file(path);
  std::vector<Document> docs;
  if (ext == ".jsonl") {
    std::istringstream lines(content);
    std::string line;
    for (int n = 1; std::getline(lines, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const std::string where = path + ":" + std::to_string(n);
      require_utf8(line, where);
      if (common::json_nests_deeper_than(line))
        throw Error(where + ": nests deeper than " + std::to_string(common::kMaxJsonDepth) + " levels");
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        throw Error(where + ": malformed JSON: " + e.what());
      }
      if (!j.is_object() || !j.contains("text") || !j["text"].is_string()) {
        throw Error(where + ": expected an object with a string \"text\"");
      }
      Document d;
      d.text = j["text"].get<std::string>();
      if (j.contains("title") && j["title"].is_string()) d.title = j["title"].get<std::string>();
      if (j.contains("id")) d.source_id = j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump();
      d.origin = where;
      // Real corpora have records without text (Cranfield has some): the title stands in for it, and
      // a record with neither is counted and left out — there is nothing in it to lose.
      if (d.text.find_first_not_of(" \t\r\n") == std::string::npos) d.text = d.title;
      if (d.text.find_first_not_of(" \t\r\n") == std::string::npos) {
        ++empty;
        continue;
      }
      docs.push_back(std::move(d));
    }
  } else if (ext == ".txt" || ext == ".md") {
    require_utf8(content, path);
    Document d;
    d.text = content;
    d.title = p.stem().string();
    if (ext == ".md") {  // the first "# " heading names a Markdown document
      std::istringstream lines(content);
      std::string line;
      while (std::getline(lines, line)) {
        if (line.rfind("# ", 0) == 0) {
          d.title = line.substr(2);
          break;
        }
      }
    }
    d.origin = path;
    if (d.text.find_first_not_of(" \t\r\n") == std::string::npos) {
      ++empty;
      return docs;
    }
    docs.push_back(std::move(d));
  } else {
    throw Error(path + ": unsupported file type '" + ext + "' (ingest reads .txt, .md and .jsonl)");
  }
  return docs;
}

// Chunks of `size` whitespace-separated words overlapping by `overlap`, cut at whitespace so that
// no UTF-8 character (or word) is split. Word count stands in for tokens: it is what embed and
// FTS5 see, and it is model-independent (the context builder recounts with the real tokenizer).
std::vector<std::string> chunk(const std::string& text, std::size_t size, std::size_t overlap) {
  std::vector<std::pair<std::size_t, std::size_t>> words;  // byte [begin, end)
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    const std::size_t b = i;
    while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i > b) words.emplace_back(b, i);
  }
  std::vector<std::string> chunks;
  if (words.size() <= size) {
    chunks.push_back(text);
    return chunks;
  }
  const std::size_t stride = size - overlap;
  for (std::size_t start = 0; start < words.size(); start += stride) {
    const std::size_t end = std::min(start + size, words.size());
    chunks.push_back(text.substr(words[start].first, words[end - 1].second - words[start].first));
    if (end == words.size()) break;
  }
  return chunks;
}

struct Planned {
  Document doc;
  std::string doc_id, note_key;
  std::vector<Node> nodes;  // [0] the document
  std::vector<Edge> edges;
};

}  // namespace

IngestReport ingest(Memory& memory, const std::vector<std::string>& paths, const IngestParams& params) {
  if (params.chunk_tokens < 8) throw Error("ingest: chunk_tokens must be at least 8");
  if (params.overlap_tokens >= params.chunk_tokens) throw Error("ingest: overlap_tokens must be below chunk_tokens");
  if (!(params.same_topic_threshold > 0 && params.same_topic_threshold <= 1)) {
    throw Error("ingest: same_topic_threshold must be in (0, 1]");
  }
  IngestReport report;
  std::vector<Planned> plan;
  for (const auto& path : paths) {
    for (Document& d : read_documents(path, report.empty)) {
      Planned p;
      p.doc_id = content_id(d.title, d.text, 0);
      p.note_key = "ingest:" + p.doc_id;
      p.doc = std::move(d);
      plan.push_back(std::move(p));
    }
    ++report.files;
  }

  // 1. Nodes and structural edges, one transaction per document.
  std::vector<std::size_t> unfinished;  // into plan
  for (std::size_t i = 0; i < plan.size(); ++i) {
    Planned& p = plan[i];
    if (params.progress) params.progress(i, plan.size() * 2);
    if (memory.note(p.note_key)) {
      ++report.skipped;
      continue;
    }
    if (memory.get(p.doc_id)) {  // interrupted after its commit: only the edges of step 2 are missing
      unfinished.push_back(i);
      continue;
    }
    const embed::Embedder* embedder = memory.embedder();
    std::vector<float> doc_vector;
    if (embedder) doc_vector = embedder->embed(p.doc.text).vector;
    // A near-duplicate of a stored document with the same title is the same document again: skip
    // it. Under another title it is another document that shares its text (a list page quoting an
    // article): keep it, joined to the original by a `near_duplicate` edge, so nothing is lost.
    std::optional<std::string> near_duplicate_of;
    if (auto dup = memory.find_duplicate(p.doc.text, doc_vector)) {
      const auto original = memory.get(*dup);
      if (original && original->title == p.doc.title) {
        ++report.duplicates;
        memory.set_note(p.note_key, "duplicate of " + *dup);
        continue;
      }
      near_duplicate_of = dup;
    }
    nlohmann::json meta = nlohmann::json::object();
    if (!p.doc.source_id.empty()) meta["source_id"] = p.doc.source_id;
    meta["origin"] = p.doc.origin;
    const auto pieces = chunk(p.doc.text, params.chunk_tokens, params.overlap_tokens);
    Node doc;
    doc.id = p.doc_id;
    doc.type = NodeType::document;
    doc.source = params.source;
    doc.title = p.doc.title;
    // A document that fits one chunk is its own retrievable unit; a longer one is a header whose
    // chunks carry the text (so that a search never returns the same words twice).
    doc.text = pieces.size() == 1 ? p.doc.text : (p.doc.title.empty() ? p.doc.origin : p.doc.title);
    if (pieces.size() == 1) doc.vector = doc_vector;
    doc.metadata = meta.dump();
    p.nodes.push_back(std::move(doc));
    if (pieces.size() > 1) {
      for (std::size_t c = 0; c < pieces.size(); ++c) {
        Node n;
        n.id = content_id(p.doc.title, p.doc.text, c + 1);
        n.type = NodeType::chunk;
        n.source = params.source;
        n.title = p.doc.title;
        n.text = pieces[c];
        nlohmann::json m = meta;
        m["chunk"] = c;
        n.metadata = m.dump();
        p.edges.push_back(Edge{"", n.id, p.doc_id, "part_of", 1.0f, 0, "ingest", 1.0f});
        if (c > 0) {
          p.edges.push_back(Edge{"", p.nodes.back().id, n.id, "follows", 1.0f, 0, "ingest", 1.0f});
          ++report.follows;
        }
        p.nodes.push_back(std::move(n));
      }
      report.chunks += pieces.size();
    }
    if (near_duplicate_of) {
      p.edges.push_back(Edge{"", p.doc_id, *near_duplicate_of, "near_duplicate", 1.0f, 0, "ingest", 1.0f});
      ++report.near_duplicates;
    }
    memory.add_batch(p.nodes, p.edges);
    ++report.documents;
    unfinished.push_back(i);
  }

  // 2. Similarity and mention edges, once every new node is searchable.
  std::vector<std::string> titles;
  std::vector<std::string> title_ids;
  if (params.mentions) {
    // Every document in memory, old and new: its title, with the document node it names.
    std::unordered_map<std::string, std::string> seen;
    for (const Planned& p : plan) {
      if (!p.doc.title.empty() && seen.emplace(p.doc.title, p.doc_id).second && memory.get(p.doc_id)) {
        titles.push_back(p.doc.title);
        title_ids.push_back(p.doc_id);
      }
    }
  }
  const detail::AhoCorasick matcher(titles);
  for (std::size_t u = 0; u < unfinished.size(); ++u) {
    Planned& p = plan[unfinished[u]];
    if (params.progress) params.progress(plan.size() + u, plan.size() * 2);
    if (p.nodes.empty()) {  // resumed: reload what step 1 stored
      auto doc = memory.get(p.doc_id, true);
      if (!doc) continue;
      p.nodes.push_back(std::move(*doc));
      for (std::size_t c = 1;; ++c) {
        auto n = memory.get(content_id(p.doc.title, p.doc.text, c), true);
        if (!n) break;
        p.nodes.push_back(std::move(*n));
      }
    }
    std::vector<Edge> edges;
    const std::size_t first = p.nodes.size() > 1 ? 1 : 0;  // the retrievable units
    std::unordered_set<std::string_view> own_ids;
    for (const Node& o : p.nodes) own_ids.insert(o.id);
    for (std::size_t i = first; i < p.nodes.size(); ++i) {
      const Node& n = p.nodes[i];
      auto stored = n.vector.empty() ? memory.get(n.id, true) : std::nullopt;
      const std::vector<float>& v = stored ? stored->vector : n.vector;
      if (!v.empty() && params.same_topic_k > 0) {
        SearchQuery q;
        q.vector = v;
        q.mode = SearchMode::dense;
        // The document's own chunks come back first; a huge document cannot ask for an unbounded k.
        q.k = std::min<std::size_t>(params.same_topic_k + p.nodes.size(), 10000);
        std::size_t linked = 0;
        for (const Hit& h : memory.search(q).hits) {
          if (linked >= params.same_topic_k || h.similarity < params.same_topic_threshold) break;
          if (own_ids.contains(h.id)) continue;
          edges.push_back(Edge{"", n.id, h.id, "same_topic", static_cast<float>(h.similarity), 0, "ingest", 1.0f});
          ++linked;
        }
        report.same_topic += linked;
      }
      for (std::size_t t : matcher.find(n.text)) {
        if (title_ids[t] == p.doc_id) continue;
        edges.push_back(Edge{"", n.id, title_ids[t], "mentions", 1.0f, 0, "ingest", 1.0f});
        ++report.mentions;
      }
    }
    memory.add_batch({}, edges);
    memory.set_note(p.note_key, "done");
  }
  if (params.progress) params.progress(plan.size() * 2, plan.size() * 2);
  return report;
}

}  // namespace ruvllm::memory
