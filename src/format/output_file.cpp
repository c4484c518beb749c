#include "format/output_file.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "codecllm/error.hpp"

namespace codecllm::format {

OutputFile::OutputFile(const std::string& path) : path_(path), tmp_path_(path + ".tmp-" + std::to_string(::getpid())) {
  f_ = std::fopen(tmp_path_.c_str(), "wb");
  if (f_ == nullptr) throw IoError(tmp_path_ + ": cannot create: " + std::strerror(errno));
}

OutputFile::~OutputFile() {
  if (f_ != nullptr) std::fclose(f_);
  if (!committed_) std::remove(tmp_path_.c_str());
}

void OutputFile::write(const void* data, size_t size) {
  if (size == 0) return;
  if (std::fwrite(data, 1, size, f_) != size) {
    throw IoError(tmp_path_ + ": write of " + std::to_string(size) + " bytes failed: " + std::strerror(errno));
  }
  pos_ += size;
}

void OutputFile::write_zeros(uint64_t count) {
  static const std::vector<uint8_t> zeros(1 << 16, 0);
  while (count > 0) {
    size_t n = count < zeros.size() ? static_cast<size_t>(count) : zeros.size();
    write(zeros.data(), n);
    count -= n;
  }
}

void OutputFile::pad_to(uint64_t alignment) {
  uint64_t rem = pos_ % alignment;
  if (rem != 0) write_zeros(alignment - rem);
}

void OutputFile::pwrite_at(uint64_t offset, const void* data, size_t size) {
  if (std::fflush(f_) != 0 ||
      ::pwrite(fileno(f_), data, size, static_cast<off_t>(offset)) != static_cast<ssize_t>(size)) {
    throw IoError(tmp_path_ + ": write at offset " + std::to_string(offset) + " failed: " + std::strerror(errno));
  }
}

void OutputFile::commit() {
  if (std::fflush(f_) != 0 || ::fsync(fileno(f_)) != 0) {
    throw IoError(tmp_path_ + ": flush failed: " + std::strerror(errno));
  }
  if (std::fclose(f_) != 0) {
    f_ = nullptr;
    throw IoError(tmp_path_ + ": close failed: " + std::strerror(errno));
  }
  f_ = nullptr;
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    throw IoError(path_ + ": cannot rename from " + tmp_path_ + ": " + std::strerror(errno));
  }
  committed_ = true;
}

}  // namespace codecllm::format
