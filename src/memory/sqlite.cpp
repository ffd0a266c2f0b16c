#include "sqlite.h"

#include "ruvllm/memory.h"

namespace ruvllm::memory::detail {
namespace {

// What SQLite's result says about whose move it is (ruvllm/error.h).
ErrorCode code_of(int rc) {
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      return (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) ? ErrorCode::conflict
                                                                                    : ErrorCode::invalid_argument;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return ErrorCode::unavailable;
    case SQLITE_NOMEM: return ErrorCode::internal;
    case SQLITE_FULL:  // a full disk is the operator's to fix, not a rate a client should retry at
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM: return ErrorCode::io;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return ErrorCode::corrupt;
    default: return ErrorCode::internal;
  }
}

}  // namespace

Db::Db(const std::string& path, bool read_only) {
  const int flags = (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                    SQLITE_OPEN_NOMUTEX;  // each connection is used by one thread at a time
  if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
    const std::string message = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error(ErrorCode::io, path + ": cannot open database: " + message);
  }
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, 10000);  // a writer holds the lock for one transaction at most
}

Db::~Db() {
  for (auto& [sql, p] : prepared_) sqlite3_finalize(p.stmt);  // close fails while statements live
  sqlite3_close(db_);
}

void Db::exec(std::string_view sql) {
  char* message = nullptr;
  if (const int rc = sqlite3_exec(db_, std::string(sql).c_str(), nullptr, nullptr, &message); rc != SQLITE_OK) {
    std::string what = message ? message : sqlite3_errmsg(db_);
    sqlite3_free(message);
    throw Error(code_of(sqlite3_extended_errcode(db_)), "database: " + what);
  }
}

void Db::fail(std::string_view what) const {
  throw Error(code_of(sqlite3_extended_errcode(db_)), "database: " + std::string(what) + ": " + sqlite3_errmsg(db_));
}

Statement::Statement(Db& db, std::string_view sql) : db_(db) {
  if (sqlite3_prepare_v3(db.handle(), sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt_,
                         nullptr) != SQLITE_OK) {
    db.fail("prepare " + std::string(sql.substr(0, 60)));
  }
}

Statement::Statement(Db& db, std::string_view sql, Cached) : db_(db) {
  auto [it, added] = db.prepared_.try_emplace(std::string(sql));
  Db::Prepared& p = it->second;
  if (p.in_use) {  // the same SQL open further up the stack: a private copy
    if (sqlite3_prepare_v2(db.handle(), sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr) != SQLITE_OK)
      db.fail("prepare " + std::string(sql.substr(0, 60)));
    return;
  }
  if (!p.stmt && sqlite3_prepare_v3(db.handle(), sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                    &p.stmt, nullptr) != SQLITE_OK) {
    db.prepared_.erase(it);
    db.fail("prepare " + std::string(sql.substr(0, 60)));
  }
  p.in_use = true;
  in_use_ = &p.in_use;
  stmt_ = p.stmt;
}

Statement::~Statement() {
  if (!in_use_) {
    sqlite3_finalize(stmt_);
    return;
  }
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  *in_use_ = false;
}

Statement& Statement::bind(int i, int64_t v) {
  if (sqlite3_bind_int64(stmt_, i, v) != SQLITE_OK) db_.fail("bind");
  return *this;
}
Statement& Statement::bind(int i, double v) {
  if (sqlite3_bind_double(stmt_, i, v) != SQLITE_OK) db_.fail("bind");
  return *this;
}
Statement& Statement::bind(int i, std::string_view v) {
  if (sqlite3_bind_text64(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8) != SQLITE_OK) db_.fail("bind");
  return *this;
}
Statement& Statement::bind_blob(int i, std::span<const std::byte> v) {
  if (sqlite3_bind_blob64(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT) != SQLITE_OK) db_.fail("bind");
  return *this;
}
Statement& Statement::bind_null(int i) {
  if (sqlite3_bind_null(stmt_, i) != SQLITE_OK) db_.fail("bind");
  return *this;
}

bool Statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  const std::string message = sqlite3_errmsg(db_.handle());
  const ErrorCode code = code_of(sqlite3_extended_errcode(db_.handle()));
  sqlite3_reset(stmt_);
  throw Error(code, "database: " + message);
}

void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::string Statement::text(int col) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
  return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
}

std::span<const std::byte> Statement::blob(int col) const {
  const auto* p = static_cast<const std::byte*>(sqlite3_column_blob(stmt_, col));
  return {p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))};
}

}  // namespace ruvllm::memory::detail
