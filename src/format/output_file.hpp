// A file written under a temporary name next to its destination and renamed into place only
// by commit(): a crash, an exception or a full disk never leaves a half-written output.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace codecllm::format {

class OutputFile {
 public:
  explicit OutputFile(const std::string& path);  // opens "<path>.tmp-<pid>"
  ~OutputFile();                                 // removes the temporary if not committed
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  void write(const void* data, size_t size);
  void write_zeros(uint64_t count);
  void pad_to(uint64_t alignment);  // zero bytes up to the next multiple of alignment
  void pwrite_at(uint64_t offset, const void* data, size_t size);
  uint64_t position() const { return pos_; }
  const std::string& path() const { return path_; }
  void commit();  // flush, fsync, rename over path

 private:
  std::string path_;
  std::string tmp_path_;
  std::FILE* f_ = nullptr;
  uint64_t pos_ = 0;
  bool committed_ = false;
};

}  // namespace codecllm::format
