// The .cllm index: what the container holds and where. Serialized as JSON at the end of the
// file (docs/FORMAT.md); every offset and size is validated against the file when parsed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "codecllm/dtype.hpp"

namespace codecllm::format {

// How one plane's bytes are stored.
enum class PlaneCodec : uint8_t {
  Raw,   // payload is the plane itself
  Rans,  // payload is a rANS plane (docs/FORMAT.md, "rANS plane")
  Zstd,  // payload is a Zstd plane: one standard Zstd frame per chunk (docs/FORMAT.md, "Zstd plane")
  Exp4,  // payload is an Exp4 plane: exponents as fixed 4-bit codes with escapes (docs/FORMAT.md, "Exp4 plane")
};

const char* plane_codec_name(PlaneCodec c);

struct PlaneRecord {
  std::string role;  // "exponent", "sign_mantissa", "mantissa_lo", "int8", "scales", "bytes", ...
  PlaneCodec codec = PlaneCodec::Raw;
  uint64_t offset = 0;   // absolute file offset of the payload (4 KiB aligned)
  uint64_t size = 0;     // payload bytes
  uint64_t symbols = 0;  // decoded plane bytes
  uint64_t payload_xxh3 = 0;
  double entropy_bits = 0;  // order-0 entropy of the decoded plane, bits per symbol
};

enum class TensorMode : uint8_t {
  Lossless,  // decoded bytes == source bytes
  Int8,      // decoded int8 values + per-row f32 scales; source was a float matrix
};

const char* tensor_mode_name(TensorMode m);

// Transforms applied before entropy coding, undone in reverse order by decoders.
enum class Transform : uint8_t {
  None,        // one plane: the source bytes
  FloatSplit,  // BF16/F32: exponent byte | sign+top mantissa bits | remaining mantissa bytes
  BytePlanes,  // F16 (and other widths): byte k of every element forms plane k
  Int8Rows,    // int8 mode: quantized values plane + f32 scales plane
};

const char* transform_name(Transform t);

enum class Predictor : uint8_t {
  None,
  Left,  // int8 only: q[i] - q[i-1] along each row (mod 256), first element of a row kept
};

const char* predictor_name(Predictor p);

struct TensorRecord {
  std::string name;
  std::vector<uint64_t> shape;
  DType dtype = DType::Unknown;  // source dtype
  TensorMode mode = TensorMode::Lossless;
  Transform transform = Transform::None;
  Predictor predictor = Predictor::None;
  uint64_t decoded_size = 0;  // lossless: source bytes; int8: one byte per element
  uint64_t decoded_xxh3 = 0;  // lossless: of the source bytes; int8: of the int8 values
  std::vector<PlaneRecord> planes;

  uint64_t num_elements() const;
  const PlaneRecord* plane(const std::string& role) const;
};

// Named byte strings carried along with the weights (config.json, tokenizer files).
struct BlobRecord {
  std::string name;
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t xxh3 = 0;
};

struct Index {
  uint32_t version = 1;
  std::string mode;      // "lossless" or "int8": what the compress command was asked
  std::string source;    // where the weights came from, for inspect
  std::string producer;  // "codecllm 0.1.0"
  std::vector<TensorRecord> tensors;
  std::vector<BlobRecord> blobs;

  const TensorRecord* find_tensor(const std::string& name) const;
  const BlobRecord* find_blob(const std::string& name) const;
};

// JSON text of an index. The parser validates types, enums, shapes and offsets against
// file_size and throws FormatError naming `what` (the file) on the first problem.
std::string index_to_json(const Index& index);
Index index_from_json(const std::string& text, uint64_t file_size, const std::string& what);

// Carried files are written back out by name, so names are plain: [A-Za-z0-9._-], no
// leading dot, no separators. Anything else in an index is rejected as hostile.
bool is_plain_file_name(const std::string& name);

std::string hex64(uint64_t v);
bool parse_hex64(const std::string& s, uint64_t* out);

}  // namespace codecllm::format
