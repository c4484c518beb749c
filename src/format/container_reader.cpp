#include <cstring>

#include "codecllm/error.hpp"
#include "format/checksum.hpp"
#include "format/container.hpp"

namespace codecllm::format {

namespace {

FileHeader read_header(ByteSpan file, const std::string& path) {
  if (file.size() < kHeaderBytes) {
    throw FormatError(path + ": not a .cllm file (" + std::to_string(file.size()) + " bytes, shorter than the header)");
  }
  FileHeader h;
  std::memcpy(&h, file.data(), sizeof h);
  if (std::memcmp(h.magic, kMagic, sizeof h.magic) != 0) throw FormatError(path + ": not a .cllm file (bad magic)");
  if (xxh3_64(&h, offsetof(FileHeader, header_xxh3)) != h.header_xxh3)
    throw FormatError(path + ": header checksum mismatch (file corrupt)");
  if (h.version_major != kVersionMajor) {
    throw FormatError(path + ": format version " + std::to_string(h.version_major) +
                      " is not supported (this build reads version " + std::to_string(kVersionMajor) + ")");
  }
  if (h.file_size != file.size()) {
    throw FormatError(path + ": file is " + std::to_string(file.size()) + " bytes but the header says " +
                      std::to_string(h.file_size) + " (truncated or appended to)");
  }
  if (h.index_size > kMaxIndexBytes || h.index_offset > file.size() || h.index_size > file.size() - h.index_offset ||
      h.index_offset < kPayloadAlignment) {
    throw FormatError(path + ": index location out of range");
  }
  return h;
}

}  // namespace

Index parse_container(ByteSpan file, const std::string& path) {
  FileHeader h = read_header(file, path);
  const uint8_t* text = file.data() + h.index_offset;
  if (xxh3_64(text, h.index_size) != h.index_xxh3) throw FormatError(path + ": index checksum mismatch (file corrupt)");
  // Payloads must lie between the header region and the index.
  return index_from_json(std::string(reinterpret_cast<const char*>(text), h.index_size), h.index_offset, path);
}

ContainerReader::ContainerReader(const std::string& path) : file_(path), index_(parse_container(file_.bytes(), path)) {}

ByteSpan ContainerReader::payload(const PlaneRecord& plane, bool verify) const {
  // Offsets were validated against the file when the index was parsed.
  ByteSpan bytes(file_.data() + plane.offset, plane.size);
  if (verify && xxh3_64(bytes.data(), bytes.size()) != plane.payload_xxh3) {
    throw FormatError(path() + ": payload checksum mismatch in plane '" + plane.role + "' at offset " +
                      std::to_string(plane.offset) + " (file corrupt)");
  }
  return bytes;
}

ByteSpan ContainerReader::blob(const std::string& name) const {
  const BlobRecord* b = index_.find_blob(name);
  if (b == nullptr) return {};
  ByteSpan bytes(file_.data() + b->offset, b->size);
  if (xxh3_64(bytes.data(), bytes.size()) != b->xxh3)
    throw FormatError(path() + ": checksum mismatch in carried file '" + name + "' (file corrupt)");
  return bytes;
}

}  // namespace codecllm::format
