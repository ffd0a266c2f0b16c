// Prometheus metrics: requests by endpoint and status, stage latencies, tokens, cache and routes.
#include "impl.h"

namespace ruvllm::server {

using namespace detail;

void Server::Impl::count(const std::string& endpoint, int status) {
  requests.Add({{"endpoint", endpoint}, {"status", std::to_string(status)}}).Increment();
}

void Server::Impl::observe(const pipeline::Response& r) {
  auto stage = [&](const char* name, int64_t us) {
    stage_seconds.Add({{"stage", name}}, latency_buckets).Observe(static_cast<double>(us) / 1e6);
  };
  stage("embed", r.times.embed);
  stage("search", r.times.search);
  stage("expand", r.times.expand);
  stage("attend", r.times.attend);
  stage("route", r.times.route);
  stage("context", r.times.context);
  stage("llm", r.times.llm);
  stage("writeback", r.times.writeback);
  stage("total", r.times.total);
  stage("non_llm", r.times.non_llm());
  ttft_family.Add({{"model", r.model}}, latency_buckets).Observe(static_cast<double>(r.times.ttft) / 1e6);
  if (!r.cache_hit && r.times.llm > 0 && r.completion_tokens > 0)
    tps_family.Add({{"model", r.model}}, prometheus::Histogram::BucketBoundaries{1, 5, 10, 20, 50, 100, 200, 500, 1000})
        .Observe(r.completion_tokens / (static_cast<double>(r.times.llm) / 1e6));
  tokens_family.Add({{"kind", "prompt"}}).Increment(r.prompt_tokens);
  tokens_family.Add({{"kind", "cached"}}).Increment(r.cached_tokens);
  tokens_family.Add({{"kind", "completion"}}).Increment(r.completion_tokens);
  cache_family.Add({{"result", r.cache_hit ? "hit" : "miss"}}).Increment();
  routes_family.Add({{"model", r.model}, {"by", r.routed ? "router" : "fixed"}}).Increment();
}

}  // namespace ruvllm::server
