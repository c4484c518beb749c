#include <cstring>

#include "format/checksum.hpp"
#include "format/container.hpp"

namespace codecllm::format {

ContainerWriter::ContainerWriter(const std::string& path) : out_(path) {
  // The header is written last (it holds the index location); reserve its 4 KiB region now.
  out_.write_zeros(kPayloadAlignment);
}

uint64_t ContainerWriter::add_payload(ByteSpan bytes) {
  out_.pad_to(kPayloadAlignment);
  uint64_t offset = out_.position();
  out_.write(bytes.data(), bytes.size());
  return offset;
}

void ContainerWriter::finish(const Index& index) {
  std::string text = index_to_json(index);
  out_.pad_to(8);
  FileHeader h{};
  std::memcpy(h.magic, kMagic, sizeof h.magic);
  h.version_major = kVersionMajor;
  h.version_minor = kVersionMinor;
  h.index_offset = out_.position();
  h.index_size = text.size();
  h.index_xxh3 = xxh3_64(text.data(), text.size());
  out_.write(text.data(), text.size());
  h.file_size = out_.position();
  h.header_xxh3 = xxh3_64(&h, offsetof(FileHeader, header_xxh3));
  out_.pwrite_at(0, &h, sizeof h);
  out_.commit();
}

}  // namespace codecllm::format
