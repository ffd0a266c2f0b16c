// The accuracy slots' estimator: for each ladder model, a ridge regression of its quality on the
// query's TF-IDF word vector, fitted on the training queries. Why words and not the query vector:
// a GloVe average blurs the subject (MMLU's 57 subjects, GSM8K's arithmetic) that decides which
// model wins; the words keep it. docs/router.md has the measurements.
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "common/utf8.h"
#include "internal.h"

namespace ruvllm::router {
namespace {

constexpr std::size_t kMinDocuments = 3;   // a term in fewer training queries is noise
constexpr std::size_t kMaxTerms = 32768;   // the most frequent terms, to bound the file
constexpr std::size_t kMaxTermBytes = 40;  // longer runs are hashes or markup, not words

bool word_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c >= 0x80;
}

// Lower-cased runs of word bytes, at least 2 bytes long (UTF-8 sequences stay inside words).
template <typename Visit>
void for_each_term(std::string_view text, Visit&& visit) {
  std::string term;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    const unsigned char c = i < text.size() ? static_cast<unsigned char>(text[i]) : ' ';
    if (word_byte(c)) {
      term.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
      continue;
    }
    if (term.size() >= 2 && term.size() <= kMaxTermBytes) visit(term);
    term.clear();
  }
}

// Sparse rows in compressed form.
struct Rows {
  std::vector<std::size_t> start{0};
  std::vector<uint32_t> column;
  std::vector<float> value;
  std::size_t size() const { return start.size() - 1; }
};

// Each training row's quality per model (mean over its trials of that model; NaN = none).
std::vector<std::array<double, kMaxTiers>> qualities(const std::vector<Outcome>& outcomes, std::size_t tiers) {
  std::vector<std::array<double, kMaxTiers>> q(outcomes.size(), nan_tiers());
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    std::array<double, kMaxTiers> sum{}, n{};
    for (const Trial& t : outcomes[i].trials) {
      if (t.model < tiers && t.model < kMaxTiers && std::isfinite(t.quality))
        sum[t.model] += t.quality, n[t.model] += 1;
    }
    for (std::size_t m = 0; m < kMaxTiers; ++m) {
      if (n[m] > 0) q[i][m] = sum[m] / n[m];
    }
  }
  return q;
}

// Minimises Σ (y_i − x_i·w)² + α‖w‖² over the listed rows by conjugate gradients on the normal
// equations (XᵀX + αI) w = Xᵀy; X is never formed densely.
std::vector<double> ridge(const Rows& X, const std::vector<std::size_t>& rows, const std::vector<double>& y,
                          std::size_t terms, double alpha) {
  std::vector<double> w(terms, 0.0), r(terms, 0.0), p, Ap(terms), Xp(rows.size());
  for (std::size_t k = 0; k < rows.size(); ++k) {
    const std::size_t i = rows[k];
    for (std::size_t e = X.start[i]; e < X.start[i + 1]; ++e) r[X.column[e]] += X.value[e] * y[k];
  }
  p = r;
  double rr = std::inner_product(r.begin(), r.end(), r.begin(), 0.0);
  const double stop = rr * 1e-16;
  for (int iteration = 0; iteration < 2000 && rr > stop && rr > 0; ++iteration) {
    for (std::size_t k = 0; k < rows.size(); ++k) {
      const std::size_t i = rows[k];
      double s = 0;
      for (std::size_t e = X.start[i]; e < X.start[i + 1]; ++e) s += X.value[e] * p[X.column[e]];
      Xp[k] = s;
    }
    for (std::size_t t = 0; t < terms; ++t) Ap[t] = alpha * p[t];
    for (std::size_t k = 0; k < rows.size(); ++k) {
      const std::size_t i = rows[k];
      for (std::size_t e = X.start[i]; e < X.start[i + 1]; ++e) Ap[X.column[e]] += X.value[e] * Xp[k];
    }
    const double step = rr / std::inner_product(p.begin(), p.end(), Ap.begin(), 0.0);
    for (std::size_t t = 0; t < terms; ++t) w[t] += step * p[t], r[t] -= step * Ap[t];
    const double next = std::inner_product(r.begin(), r.end(), r.begin(), 0.0);
    for (std::size_t t = 0; t < terms; ++t) p[t] = r[t] + next / rr * p[t];
    rr = next;
  }
  return w;
}

// Fits one model per tier on the rows in `train` (intercept = their mean quality) and predicts the
// rows in `predict`; untrained tiers (no trial among the rows) stay NaN.
struct TierFit {
  std::vector<std::vector<float>> weight;  // per tier; empty = no trial
  std::vector<double> intercept;
};
TierFit fit_tiers(const Rows& X, const std::vector<std::array<double, kMaxTiers>>& q,
                  const std::vector<std::size_t>& train, std::size_t tiers, std::size_t terms, double alpha) {
  TierFit fit{std::vector<std::vector<float>>(tiers), std::vector<double>(tiers, std::nan(""))};
  for (std::size_t m = 0; m < tiers; ++m) {
    std::vector<std::size_t> rows;
    double mean = 0;
    for (std::size_t i : train) {
      if (std::isfinite(q[i][m])) rows.push_back(i), mean += q[i][m];
    }
    if (rows.empty()) continue;
    mean /= static_cast<double>(rows.size());
    std::vector<double> y(rows.size());
    for (std::size_t k = 0; k < rows.size(); ++k) y[k] = q[rows[k]][m] - mean;
    const std::vector<double> w = ridge(X, rows, y, terms, alpha);
    fit.weight[m].assign(w.begin(), w.end());  // float, as the file keeps it
    fit.intercept[m] = mean;
  }
  return fit;
}

double predict_row(const Rows& X, std::size_t i, const std::vector<float>& w, double intercept) {
  double s = intercept;
  for (std::size_t e = X.start[i]; e < X.start[i + 1]; ++e) s += static_cast<double>(X.value[e]) * w[X.column[e]];
  return s;
}

Rows vectors_of(const WordModel& model, const std::vector<Outcome>& outcomes) {
  Rows X;
  for (const Outcome& o : outcomes) {
    for (const auto& [column, value] : word_vector(model, o.signals.query.text)) {
      X.column.push_back(column);
      X.value.push_back(value);
    }
    X.start.push_back(X.column.size());
  }
  return X;
}

// Out-of-fold predictions (each row from a fit without its fold) at one ridge strength; a model
// without trials outside a row's fold reads NaN there (the caller fills in its intercept).
std::vector<std::size_t> folds_of(const std::vector<Outcome>& outcomes) {
  std::vector<std::size_t> folds;
  for (const Outcome& o : outcomes) folds.push_back(fold_of(o.signals.query.text));
  return folds;
}

std::vector<std::array<float, kMaxTiers>> out_of_fold(const Rows& X, const std::vector<std::size_t>& folds,
                                                      const std::vector<std::array<double, kMaxTiers>>& q,
                                                      std::size_t tiers, std::size_t terms, double alpha) {
  std::vector<std::array<float, kMaxTiers>> out(X.size());
  for (auto& row : out) row.fill(0.0f);
  for (std::size_t fold = 0; fold < kFolds; ++fold) {
    std::vector<std::size_t> train, held;
    for (std::size_t i = 0; i < X.size(); ++i) (folds[i] == fold ? held : train).push_back(i);
    const TierFit fit = fit_tiers(X, q, train, tiers, terms, alpha);
    for (std::size_t i : held) {
      for (std::size_t m = 0; m < tiers; ++m) {
        out[i][m] =
            fit.weight[m].empty() ? NAN : static_cast<float>(predict_row(X, i, fit.weight[m], fit.intercept[m]));
      }
    }
  }
  return out;
}

// A model without trials outside a row's fold: the full fit's mean, as a query without known words
// reads (0 for a model without any trial, as raw_features leaves its slot).
void fill_missing(std::vector<std::array<float, kMaxTiers>>& predictions, const std::vector<double>& intercept) {
  for (auto& row : predictions) {
    for (std::size_t m = 0; m < intercept.size(); ++m) {
      if (std::isnan(row[m])) row[m] = std::isfinite(intercept[m]) ? static_cast<float>(intercept[m]) : 0.0f;
    }
  }
}

}  // namespace

std::size_t fold_of(std::string_view text) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a: the same folds on every platform
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ULL;
  return static_cast<std::size_t>(h % kFolds);
}

void WordModel::index() {
  column.clear();
  column.reserve(terms.size());
  for (std::size_t t = 0; t < terms.size(); ++t) {
    if (!column.emplace(terms[t], static_cast<uint32_t>(t)).second) throw Error("router: repeated word " + terms[t]);
  }
}

std::vector<std::pair<uint32_t, float>> word_vector(const WordModel& model, std::string_view text) {
  std::vector<std::pair<uint32_t, float>> v;
  if (model.terms.empty()) return v;
  for_each_term(text, [&](const std::string& term) {
    const auto it = model.column.find(term);
    if (it != model.column.end()) v.emplace_back(it->second, 1.0f);
  });
  std::sort(v.begin(), v.end());
  std::size_t out = 0;
  for (std::size_t i = 0; i < v.size();) {  // sublinear tf · idf, then unit length
    std::size_t j = i;
    while (j < v.size() && v[j].first == v[i].first) ++j;
    v[out++] = {v[i].first, static_cast<float>((1 + std::log(static_cast<double>(j - i))) * model.idf[v[i].first])};
    i = j;
  }
  v.resize(out);
  double norm = 0;
  for (const auto& e : v) norm += static_cast<double>(e.second) * e.second;
  if (!(norm > 0)) return {};  // only zero weights (a damaged idf): no word evidence
  for (auto& e : v) e.second = static_cast<float>(e.second / std::sqrt(norm));
  return v;
}

void predict_accuracy(const WordModel& model, std::string_view text, float* out) {
  const auto v = word_vector(model, text);
  for (std::size_t m = 0; m < model.tiers; ++m) {
    if (!std::isfinite(model.intercept[m])) continue;
    double s = model.intercept[m];
    for (const auto& [column, value] : v)
      s += static_cast<double>(value) * model.weight[m * model.terms.size() + column];
    out[m] = static_cast<float>(s);
  }
}

WordModel fit_word_model(const std::vector<Outcome>& outcomes, std::size_t tiers,
                         std::vector<std::array<float, kMaxTiers>>* out_of_fold_predictions) {
  WordModel model;
  model.tiers = std::min(tiers, kMaxTiers);
  // Vocabulary and idf from every training query (no labels involved).
  std::map<std::string, std::size_t> documents;
  for (const Outcome& o : outcomes) {
    std::vector<std::string> seen;
    for_each_term(o.signals.query.text, [&](const std::string& t) { seen.push_back(t); });
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    for (const std::string& t : seen) {
      if (!common::first_invalid_utf8(t)) ++documents[t];  // the file is JSON: valid UTF-8 only
    }
  }
  std::vector<std::pair<std::size_t, std::string>> frequent;
  for (const auto& [term, df] : documents) {
    if (df >= kMinDocuments) frequent.emplace_back(df, term);
  }
  std::stable_sort(frequent.begin(), frequent.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  if (frequent.size() > kMaxTerms) frequent.resize(kMaxTerms);
  std::sort(frequent.begin(), frequent.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  const double n = static_cast<double>(outcomes.size());
  for (const auto& [df, term] : frequent) {
    model.terms.push_back(term);
    model.idf.push_back(static_cast<float>(std::log((1 + n) / (1 + static_cast<double>(df))) + 1));  // smoothed
  }
  model.index();
  const Rows X = vectors_of(model, outcomes);
  const auto folds = folds_of(outcomes);
  const auto q = qualities(outcomes, model.tiers);
  const std::size_t terms = model.terms.size();

  // The ridge strength: the one whose out-of-fold predictions best tell the models apart — the
  // error of each model's quality relative to the row's mean over its models, which is what a
  // route depends on (a level shared by all models does not move it).
  double best_error = INFINITY;
  std::vector<std::array<float, kMaxTiers>> best_predictions;
  for (double alpha : kRidgeStrengths) {
    auto predictions = out_of_fold(X, folds, q, model.tiers, terms, alpha);
    double error = 0;
    for (std::size_t i = 0; i < q.size(); ++i) {
      double truth = 0, guess = 0, count = 0;
      auto scored = [&](std::size_t m) { return std::isfinite(q[i][m]) && std::isfinite(predictions[i][m]); };
      for (std::size_t m = 0; m < model.tiers; ++m) {
        if (scored(m)) truth += q[i][m], guess += predictions[i][m], count += 1;
      }
      for (std::size_t m = 0; m < model.tiers && count > 1; ++m) {
        if (!scored(m)) continue;
        const double d = (q[i][m] - truth / count) - (predictions[i][m] - guess / count);
        error += d * d;
      }
    }
    if (best_predictions.empty() || error < best_error)
      best_error = error, model.alpha = alpha, best_predictions = std::move(predictions);
  }
  std::vector<std::size_t> all(X.size());
  std::iota(all.begin(), all.end(), 0);
  const TierFit fit = fit_tiers(X, q, all, model.tiers, terms, model.alpha);
  model.weight.assign(model.tiers * terms, 0.0f);
  model.intercept = fit.intercept;
  for (std::size_t m = 0; m < model.tiers; ++m) {
    if (!fit.weight[m].empty()) std::copy(fit.weight[m].begin(), fit.weight[m].end(), model.weight.begin() + m * terms);
  }
  fill_missing(best_predictions, model.intercept);
  if (out_of_fold_predictions) *out_of_fold_predictions = std::move(best_predictions);
  return model;
}

std::vector<std::array<float, kMaxTiers>> out_of_fold_accuracy(const WordModel& model,
                                                               const std::vector<Outcome>& outcomes) {
  auto predictions = out_of_fold(vectors_of(model, outcomes), folds_of(outcomes), qualities(outcomes, model.tiers),
                                 model.tiers, model.terms.size(), model.alpha);
  fill_missing(predictions, model.intercept);
  return predictions;
}

}  // namespace ruvllm::router
