// Whole-tensor encoding: pick the transform for the mode and dtype, split into planes,
// entropy code each plane where that pays, and describe the result as a TensorRecord.
// decode_tensor is the CPU reference decoder that every GPU result is checked against.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "codec/exp4_plane.hpp"
#include "codec/rans.hpp"
#include "codec/zstd_plane.hpp"
#include "codecllm/dtype.hpp"
#include "codecllm/span.hpp"
#include "format/index.hpp"

namespace codecllm::codec {

enum class PredictorChoice { Auto, Off, On };

// The coder of coded planes: the project's rANS; standard Zstd frames (decoded on the GPU by
// nvCOMP where it is installed); or Exp4, fixed 4-bit exponent codes that the GPU decodes
// inside its matrix-vector products (exp4_plane.hpp), for the exponents of BF16 tensors, with
// rANS for every other plane.
enum class PlaneCoder { Rans, Zstd, Exp4 };

// The coder a user names ("rans", "zstd", "exp4"); throws Error for any other name.
PlaneCoder plane_coder_named(const std::string& name);

struct EncodeOptions {
  format::TensorMode mode = format::TensorMode::Lossless;
  bool quantize_embeddings = false;  // int8 mode: also quantize token embeddings
  PredictorChoice predictor = PredictorChoice::Auto;
  RansOptions rans;
  PlaneCoder coder = PlaneCoder::Rans;
  // Zstd: lossless float tensors are coded both as byte planes (exponents apart) and as whole
  // values, and keep the smaller; int8 values are coded without the LEFT predictor and
  // nothing uses class tables (the GPU decodes zstd planes whole, then assembles).
  ZstdOptions zstd;
  // Matrices: chunks of whole rows, the most that fit rans.chunk_symbols (at least one row),
  // where the row length is a multiple of 32.
  bool row_aligned_chunks = true;
  // Lossless BF16 embeddings and output heads: exponent planes coded with per-row or
  // per-column class tables where those save at least 0.5% (class_tables.hpp). On by default:
  // they are decoded once, at load, so their slower GPU decoder (cuda/decode_class_kernel.cu)
  // costs milliseconds once while the smaller file is kept for the model's lifetime.
  bool class_tables = true;
};

struct EncodedTensor {
  format::TensorRecord record;                 // plane offsets are 0 until written
  std::vector<std::vector<uint8_t>> payloads;  // one per record.planes entry
  bool predictor_tried = false;
  std::string note;  // why a tensor requested as int8 stayed lossless, if it did
};

// True for tensors the int8 mode quantizes: 2-D float matrices, embeddings only on request.
bool wants_int8(const std::string& name, DType dtype, const std::vector<uint64_t>& shape, const EncodeOptions& options);

EncodedTensor encode_tensor(const std::string& name, DType dtype, const std::vector<uint64_t>& shape, ByteSpan data,
                            const EncodeOptions& options);

struct DecodedTensor {
  std::vector<uint8_t> bytes;  // lossless: the source bytes; int8: the int8 values
  std::vector<float> scales;   // int8 only: one per row
};

using PayloadFn = std::function<ByteSpan(const format::PlaneRecord&)>;

// Decodes on the CPU and checks decoded_xxh3. Throws FormatError naming `what` and the tensor.
DecodedTensor decode_tensor(const format::TensorRecord& record, const PayloadFn& payload_of, const std::string& what);

// Decodes one plane of a record (raw copy or rANS) into out.
void decode_plane(const format::PlaneRecord& plane, ByteSpan payload, MutableByteSpan out, const std::string& what);

}  // namespace codecllm::codec
