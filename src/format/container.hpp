// The .cllm container: a fixed header, 4 KiB-aligned payloads, and a JSON index at the end.
// Layout and every field: docs/FORMAT.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "codecllm/span.hpp"
#include "format/index.hpp"
#include "format/mapped_file.hpp"
#include "format/output_file.hpp"

namespace codecllm::format {

constexpr char kMagic[8] = {'C', 'O', 'D', 'E', 'C', 'L', 'L', 'M'};
constexpr uint32_t kVersionMajor = 1;
constexpr uint32_t kVersionMinor = 0;
constexpr uint64_t kPayloadAlignment = 4096;  // mmap and O_DIRECT friendly
constexpr uint64_t kHeaderBytes = 64;         // fields; the header region is padded to 4 KiB
constexpr uint64_t kMaxIndexBytes = uint64_t(1) << 30;

// Fixed header at offset 0, little-endian.
struct FileHeader {
  char magic[8];
  uint32_t version_major;
  uint32_t version_minor;
  uint64_t index_offset;
  uint64_t index_size;
  uint64_t index_xxh3;
  uint64_t file_size;
  uint64_t reserved;
  uint64_t header_xxh3;  // of the 56 bytes before it
};
static_assert(sizeof(FileHeader) == kHeaderBytes, "FileHeader must be packed to 64 bytes");

class ContainerWriter {
 public:
  explicit ContainerWriter(const std::string& path);
  // Appends bytes at the next 4 KiB boundary; returns their file offset.
  uint64_t add_payload(ByteSpan bytes);
  // Writes the index and the header, then renames the temporary file into place.
  void finish(const Index& index);
  const std::string& path() const { return out_.path(); }

 private:
  OutputFile out_;
};

// Validates header, index checksum and every offset in the index of a whole file in memory.
Index parse_container(ByteSpan file, const std::string& what);

class ContainerReader {
 public:
  // Maps the file and validates header, index checksum and every offset in the index.
  explicit ContainerReader(const std::string& path);

  const Index& index() const { return index_; }
  const std::string& path() const { return file_.path(); }
  uint64_t file_size() const { return file_.size(); }

  // Payload bytes of a plane; with verify, its xxh3 is checked (FormatError on mismatch).
  ByteSpan payload(const PlaneRecord& plane, bool verify = true) const;
  // A carried blob, checksum verified; nullptr-data span if absent.
  ByteSpan blob(const std::string& name) const;
  bool has_blob(const std::string& name) const { return index_.find_blob(name) != nullptr; }

 private:
  MappedFile file_;
  Index index_;
};

}  // namespace codecllm::format
