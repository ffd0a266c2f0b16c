// A read-only memory mapping of a whole file (RAII).
#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace ruvllm::common {

class MappedFile {
 public:
  // Throws std::runtime_error naming the file and the OS error when it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }

 private:
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace ruvllm::common
