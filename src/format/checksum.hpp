// xxh3-64 of byte ranges: the checksum of every payload, blob, index and decoded tensor.
#pragma once

#include <cstddef>
#include <cstdint>

namespace codecllm::format {

uint64_t xxh3_64(const void* data, size_t size);

// Streaming form, for data produced piece by piece (decoded tensors, whole files).
class Xxh3Stream {
 public:
  Xxh3Stream();
  ~Xxh3Stream();
  Xxh3Stream(const Xxh3Stream&) = delete;
  Xxh3Stream& operator=(const Xxh3Stream&) = delete;
  void update(const void* data, size_t size);
  uint64_t digest() const;

 private:
  void* state_;
};

}  // namespace codecllm::format
