// A thin RAII layer over SQLite's C API: a connection, prepared statements, transactions.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

namespace ruvllm::memory::detail {

class Db;

class Statement {
 public:
  Statement(Db& db, std::string_view sql);
  // The connection's prepared copy of `sql`, prepared on its first use there and reset, not
  // finalized, at the end: for the SQL of every request, where preparing (~50 µs on caches a model
  // has just swept) costs more than running. Nested use of one SQL prepares a private copy.
  struct Cached {};
  Statement(Db& db, std::string_view sql, Cached);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Binding (1-based positions, as SQLite counts). Text and blobs are copied.
  Statement& bind(int i, int64_t v);
  Statement& bind(int i, int v) { return bind(i, static_cast<int64_t>(v)); }
  Statement& bind(int i, double v);
  Statement& bind(int i, std::string_view v);
  Statement& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
  Statement& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
  Statement& bind_blob(int i, std::span<const std::byte> v);
  Statement& bind_null(int i);
  template <typename T>
  Statement& bind(int i, const std::optional<T>& v) {
    return v ? bind(i, *v) : bind_null(i);
  }

  bool step();  // true while a row is available; throws on error
  void run() {  // steps to completion and resets
    while (step()) {
    }
    reset();
  }
  void reset();

  int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }
  double real(int col) const { return sqlite3_column_double(stmt_, col); }
  std::string text(int col) const;
  std::span<const std::byte> blob(int col) const;
  bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

 private:
  Db& db_;
  sqlite3_stmt* stmt_ = nullptr;
  bool* in_use_ = nullptr;  // a cached statement's busy flag, cleared at the end
};

class Db {
 public:
  Db(const std::string& path, bool read_only);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  void exec(std::string_view sql);  // one or more statements without results
  int64_t last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }
  int changes() const { return sqlite3_changes(db_); }
  [[noreturn]] void fail(std::string_view what) const;  // throws memory::Error with SQLite's message
  sqlite3* handle() const { return db_; }

 private:
  friend class Statement;
  struct Prepared {
    sqlite3_stmt* stmt = nullptr;
    bool in_use = false;
  };
  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, Prepared> prepared_;  // Statement::Cached, by SQL text
};

// BEGIN IMMEDIATE … COMMIT; rolls back when destroyed uncommitted (an exception on the way out).
class Transaction {
 public:
  explicit Transaction(Db& db) : db_(db) { db_.exec("BEGIN IMMEDIATE"); }
  ~Transaction() {
    if (!done_) sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit() {
    db_.exec("COMMIT");
    done_ = true;
  }

 private:
  Db& db_;
  bool done_ = false;
};

}  // namespace ruvllm::memory::detail
