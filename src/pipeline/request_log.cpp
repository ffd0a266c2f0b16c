// The request log: one JSON row per request (requests.jsonl), flushed as it is written, so a row
// survives a crash of the process. Feedback joins it on request_id (feedback.jsonl).
#include <cstdio>

#include "common/clock.h"
#include "common/hash.h"
#include "impl.h"

namespace ruvllm::pipeline {
namespace {

using json = nlohmann::json;

double ms(int64_t us) { return static_cast<double>(us) / 1000.0; }

}  // namespace

void Pipeline::Impl::log_request(RequestState& st) {
  const Request& req = st.req;
  const Response& out = st.out;
  json row;
  row["request_id"] = out.request_id;
  row["timestamp"] = common::iso8601_now();
  row["user_id"] = req.user.empty() ? json(nullptr) : json(common::hex64(common::fnv1a(req.user)));
  row["query"] = req.query;
  row["flow"] = st.naive ? "naive" : "routed";
  row["router_features"] = out.features;
  row["router_decision"] = {
      {"model_id", out.model},
      {"routed", out.routed},
      {"context_size", st.context_budget},
      {"retrieval", router::to_string(st.naive ? router::Retrieval::dense : out.decision.retrieval)},
      {"temperature", st.sampling.temperature},
      {"top_p", st.sampling.top_p},
      {"confidence", out.decision.confidence},
      {"escalated", out.decision.escalated}};
  std::vector<std::string> used;
  for (const auto& b : out.context) used.push_back(b.node_id);
  row["retrieval_stats"] = {{"k", out.retrieved},
                            {"mean_distance", out.distance_mean},
                            {"std_distance", out.distance_std},
                            {"entropy_attention", out.attention_entropy},
                            {"nodes_used", used.size()},
                            {"node_ids", used},
                            {"subgraph_nodes", st.retrieved.subgraph.nodes.size()}};
  const StageTimes& t = out.times;
  row["latency_ms"] = {{"total", ms(t.total)},
                       {"retrieval", ms(t.embed + t.search + t.expand + t.attend)},
                       {"router", ms(t.route)},
                       {"context", ms(t.context)},
                       {"llm", ms(t.llm)},
                       {"ttft", ms(t.ttft)},
                       {"writeback", ms(t.writeback)}};
  row["stages_us"] = {{"embed", t.embed}, {"search", t.search},   {"expand", t.expand}, {"attend", t.attend},
                      {"route", t.route}, {"context", t.context}, {"llm", t.llm},       {"writeback", t.writeback}};
  row["tokens"] = {{"prompt", out.prompt_tokens}, {"cached", out.cached_tokens}, {"completion", out.completion_tokens}};
  row["cache_hit"] = out.cache_hit;
  row["finish"] = llm::to_string(out.finish);
  row["generated_weights"] = out.generated_weights;
  row["quality"] = json::object();  // filled by feedback (feedback.jsonl, joined on request_id)
  write_log(row);
}

void Pipeline::Impl::write_log(const nlohmann::json& row) {
  std::lock_guard lock(log_mutex);
  remember(row["request_id"].get<std::string>());
  if (!log.is_open()) return;
  log << row.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
  log.flush();
}

}  // namespace ruvllm::pipeline
