#include "ann.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <semaphore>
#include <thread>
#include <usearch/index_dense.hpp>

#include "common/hash.h"

namespace ruvllm::memory::detail {
namespace {

using Index = unum::usearch::index_dense_gt<uint64_t, uint32_t>;
namespace us = unum::usearch;

constexpr char kMagic[8] = {'R', 'U', 'V', 'A', 'N', 'N', '0', '1'};
constexpr uint32_t kFormatVersion = 1;

struct FileHeader {
  char magic[8];
  uint32_t version, dimension, metric, storage;
  uint64_t seq, connectivity, expansion_add, count;
  uint64_t payload_bytes, checksum;  // of USearch's stream that follows: a torn or damaged file is caught
};

// FNV-1a, byte by byte so that it does not depend on how the stream is cut into writes: cheap
// (~50 ms for a 100k x 100-d index), and enough to catch damage, not attacks.
struct Checksum {
  uint64_t h = common::kFnvOffset;
  void add(const void* data, std::size_t n) { h = common::fnv1a(data, n, h); }
};

us::metric_kind_t metric_kind(Metric m) {
  switch (m) {
    case Metric::cosine: return us::metric_kind_t::cos_k;
    case Metric::inner_product: return us::metric_kind_t::ip_k;
    case Metric::l2: return us::metric_kind_t::l2sq_k;
  }
  throw Error("unknown metric");
}

us::scalar_kind_t scalar_kind(Storage s) {
  switch (s) {
    case Storage::f32: return us::scalar_kind_t::f32_k;
    case Storage::f16: return us::scalar_kind_t::f16_k;
    case Storage::i8: return us::scalar_kind_t::i8_k;
  }
  throw Error("unknown storage");
}

// Threads that may add or search at once: USearch keeps a context per thread slot.
std::size_t thread_slots() { return std::clamp<std::size_t>(2 * std::thread::hardware_concurrency(), 8, 1024); }

}  // namespace

struct AnnIndex::State {
  Index index;
  // Shared: add, search (USearch locks per node). Exclusive: growth, remove, efSearch changes, save
  // (USearch's stream follows nodes that a concurrent add may have reserved but not yet filled).
  mutable std::shared_mutex mutex;
  // USearch has a fixed number of per-thread contexts and fails an operation that finds none free:
  // callers beyond that many wait here instead.
  mutable std::counting_semaphore<1024> slots{static_cast<std::ptrdiff_t>(thread_slots())};
};

namespace {
class Slot {  // one of State::slots, for the duration of one add or search
 public:
  explicit Slot(std::counting_semaphore<1024>& s) : s_(s) { s_.acquire(); }
  ~Slot() { s_.release(); }
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;

 private:
  std::counting_semaphore<1024>& s_;
};
}  // namespace

AnnIndex::AnnIndex(std::size_t dimension, const IndexParams& params)
    : state_(std::make_unique<State>()), dimension_(dimension), params_(params) {
  if (dimension == 0) throw Error("index: dimension must be positive");
  if (params.connectivity < 2 || params.connectivity > 256) throw Error("index: connectivity (M) must be in [2, 256]");
  if (params.expansion_add == 0 || params.expansion_search == 0) throw Error("index: expansion must be positive");
  us::index_dense_config_t config(params.connectivity, params.expansion_add, params.expansion_search);
  us::metric_punned_t metric(dimension, metric_kind(params.metric), scalar_kind(params.storage));
  auto made = Index::make(metric, config, us::default_free_value<uint64_t>(), us::index_limits_t(0, thread_slots()));
  if (!made) throw Error(std::string("index: ") + made.error.release());
  state_->index = std::move(made.index);
}

AnnIndex::~AnnIndex() = default;
AnnIndex::AnnIndex(AnnIndex&&) noexcept = default;
AnnIndex& AnnIndex::operator=(AnnIndex&&) noexcept = default;

void AnnIndex::add(uint64_t key, std::span<const float> vector) {
  if (vector.size() != dimension_) throw Error("index: vector dimension mismatch");
  Index& index = state_->index;
  const Slot slot(state_->slots);
  while (true) {
    {
      // The common case under the shared lock, so that adds from several threads run in parallel.
      std::shared_lock lock(state_->mutex);
      if (!index.contains(key) && index.size() + thread_slots() <= index.capacity()) {
        auto result = index.add(key, vector.data());
        if (!result) throw Error(std::string("index: add failed: ") + result.error.release());
        return;
      }
    }
    // Replacing a key or growing the index needs it exclusively; then try again.
    std::unique_lock lock(state_->mutex);
    if (index.contains(key)) index.remove(key);
    if (index.size() + thread_slots() > index.capacity()) {  // room for every concurrent adder
      const std::size_t grown = std::max<std::size_t>(1024, index.capacity() + index.capacity() / 2);
      if (!index.try_reserve(us::index_limits_t(grown, thread_slots()))) throw Error("index: out of memory");
    }
  }
}

void AnnIndex::reserve(std::size_t capacity) {
  std::unique_lock lock(state_->mutex);
  if (capacity > state_->index.capacity() && !state_->index.try_reserve(us::index_limits_t(capacity, thread_slots()))) {
    throw Error("index: out of memory");
  }
}

bool AnnIndex::remove(uint64_t key) {
  std::unique_lock lock(state_->mutex);
  auto result = state_->index.remove(key);
  if (!result) throw Error(std::string("index: remove failed: ") + result.error.release());
  return result.completed > 0;
}

bool AnnIndex::contains(uint64_t key) const {
  std::shared_lock lock(state_->mutex);
  return state_->index.contains(key);
}

std::size_t AnnIndex::size() const {
  std::shared_lock lock(state_->mutex);
  return state_->index.size();
}

std::size_t AnnIndex::memory_bytes() const {
  std::shared_lock lock(state_->mutex);
  return state_->index.memory_usage();
}

void AnnIndex::search(std::span<const float> query, std::size_t k, std::size_t expansion_search,
                      std::vector<AnnMatch>& out, const std::function<bool(uint64_t)>* filter) const {
  out.clear();
  if (query.size() != dimension_) throw Error("index: query dimension mismatch");
  if (k == 0) return;
  Index& index = state_->index;
  const std::size_t ef = expansion_search ? expansion_search : params_.expansion_search;
  const Slot slot(state_->slots);
  std::shared_lock lock(state_->mutex);
  while (index.expansion_search() != ef) {
    // efSearch lives in the index's config: change it exclusively, then check again under the
    // shared lock (another query may have set its own in between).
    lock.unlock();
    {
      std::unique_lock exclusive(state_->mutex);
      index.change_expansion_search(ef);
    }
    lock.lock();
  }
  auto result = filter ? index.filtered_search(query.data(), k,
                                               [filter](const auto& member_key) {
                                                 const uint64_t key = member_key;
                                                 return (*filter)(key);
                                               })
                       : index.search(query.data(), k);
  if (!result) throw Error(std::string("index: search failed: ") + result.error.release());
  out.resize(result.size());
  for (std::size_t i = 0; i < result.size(); ++i) {
    const auto match = result[i];
    out[i] = {static_cast<uint64_t>(match.member.key), static_cast<float>(match.distance)};
  }
}

void AnnIndex::search_exact(std::span<const float> query, std::size_t k, std::vector<AnnMatch>& out) const {
  out.clear();
  if (query.size() != dimension_) throw Error("index: query dimension mismatch");
  const Slot slot(state_->slots);
  std::shared_lock lock(state_->mutex);
  auto result = state_->index.search(query.data(), k, Index::any_thread(), /*exact=*/true);
  if (!result) throw Error(std::string("index: search failed: ") + result.error.release());
  out.resize(result.size());
  for (std::size_t i = 0; i < result.size(); ++i) {
    const auto match = result[i];
    out[i] = {static_cast<uint64_t>(match.member.key), static_cast<float>(match.distance)};
  }
}

void AnnIndex::save(const std::string& path, uint64_t seq) const {
  std::unique_lock lock(state_->mutex);  // see State::mutex
  const Index& index = state_->index;
  const std::string tmp = path + ".partial." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw Error(ErrorCode::io, "index: cannot write " + tmp + ": " + std::strerror(errno));
  FileHeader header{};
  std::memcpy(header.magic, kMagic, sizeof kMagic);
  header.version = kFormatVersion;
  header.dimension = static_cast<uint32_t>(dimension_);
  header.metric = static_cast<uint32_t>(params_.metric);
  header.storage = static_cast<uint32_t>(params_.storage);
  header.seq = seq;
  header.connectivity = params_.connectivity;
  header.expansion_add = params_.expansion_add;
  header.count = index.size();
  bool ok = std::fwrite(&header, sizeof header, 1, f) == 1;
  Checksum checksum;
  if (ok) {
    auto result = index.save_to_stream([&](const void* data, std::size_t n) {
      checksum.add(data, n);
      header.payload_bytes += n;
      return std::fwrite(data, 1, n, f) == n;
    });
    ok = static_cast<bool>(result);
  }
  header.checksum = checksum.h;
  ok = ok && std::fseek(f, 0, SEEK_SET) == 0 && std::fwrite(&header, sizeof header, 1, f) == 1;
  ok = ok && std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error(ErrorCode::io, "index: cannot save " + path + ": " + std::strerror(errno));
  }
}

std::optional<AnnIndex> AnnIndex::load(const std::string& path, std::size_t dimension, const IndexParams& params,
                                       uint64_t& seq, std::string& why) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    why = "no index file";
    return std::nullopt;
  }
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(f, &std::fclose);
  FileHeader header{};
  if (std::fread(&header, sizeof header, 1, f) != 1 || std::memcmp(header.magic, kMagic, sizeof kMagic) != 0) {
    why = "not a ruvllm index file";
    return std::nullopt;
  }
  if (header.version != kFormatVersion) {
    why = "index format " + std::to_string(header.version);
    return std::nullopt;
  }
  if (header.dimension != dimension || header.metric != static_cast<uint32_t>(params.metric) ||
      header.storage != static_cast<uint32_t>(params.storage) || header.connectivity != params.connectivity ||
      header.expansion_add != params.expansion_add) {
    why = "index built with other parameters";
    return std::nullopt;
  }
  // Verified before USearch parses it: its loader trusts the sizes it reads.
  std::error_code ec;
  const auto file_bytes = std::filesystem::file_size(path, ec);
  if (ec || header.payload_bytes != file_bytes - sizeof header) {
    why = "corrupt index: its header and its size disagree";
    return std::nullopt;
  }
  std::vector<unsigned char> payload(header.payload_bytes);
  Checksum checksum;
  if (std::fread(payload.data(), 1, payload.size(), f) != payload.size() || std::fgetc(f) != EOF) {
    why = "corrupt index: truncated or with trailing bytes";
    return std::nullopt;
  }
  checksum.add(payload.data(), payload.size());
  if (checksum.h != header.checksum) {
    why = "corrupt index: checksum mismatch";
    return std::nullopt;
  }
  file.reset();
  AnnIndex ann(dimension, params);
  std::size_t offset = 0;
  auto result = ann.state_->index.load_from_stream([&](void* data, std::size_t n) {
    if (n > payload.size() - offset) return false;
    std::memcpy(data, payload.data() + offset, n);
    offset += n;
    return true;
  });
  if (!result) {
    why = std::string("corrupt index: ") + result.error.release();
    return std::nullopt;
  }
  Index& index = ann.state_->index;
  if (index.size() != header.count || index.dimensions() != dimension) {
    why = "corrupt index: header and contents disagree";
    return std::nullopt;
  }
  index.change_expansion_search(params.expansion_search);
  seq = header.seq;
  return ann;
}

}  // namespace ruvllm::memory::detail
