#include "codec/tensor_codec.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>

#include "codec/byte_planes.hpp"
#include "codec/class_tables.hpp"
#include "codec/delta.hpp"
#include "codec/freq_table.hpp"
#include "codec/int8_quant.hpp"
#include "codec/zstd_plane.hpp"
#include "codecllm/error.hpp"
#include "format/checksum.hpp"

namespace codecllm::codec {

using format::PlaneCodec;
using format::PlaneRecord;
using format::TensorMode;
using format::TensorRecord;
using format::Transform;

namespace {

struct CodedPlane {
  PlaneRecord record;
  std::vector<uint8_t> payload;
};

// Sign and mantissa bits of trained weights are nearly uniform: coding them saves a percent
// or so while doubling the GPU decode work, so such planes are coded only when they shrink by
// at least this much. Exponent, int8 and opaque byte planes are coded whenever they shrink.
constexpr double kMinMantissaSaving = 0.05;

bool is_mantissa_role(const std::string& role) {
  return role == "sign_mantissa" || role == "mantissa_mid" || role == "mantissa_lo" || role == "byte0";
}

// Scratch memory one thread reuses from tensor to tensor for planes that are only an
// encoder's input (exponents, int8 values, residuals). A fresh multi-megabyte buffer costs a
// page fault per 4 KiB (the kernel zeroes each page, then a std::vector zeroes it again);
// reused, it costs nothing. Buffers above kKeepBytes are released after each tensor so that
// a thread does not hold on to the largest tensor's worth of memory.
class Scratch {
 public:
  uint8_t* get(size_t n) {
    if (n > size_) {
      data_.reset();
      data_.reset(new uint8_t[n]);  // default-initialized: no zero fill
      size_ = n;
    }
    return data_.get();
  }
  void trim() {
    if (size_ > kKeepBytes) {
      data_.reset();
      size_ = 0;
    }
  }

 private:
  static constexpr size_t kKeepBytes = size_t{64} << 20;
  std::unique_ptr<uint8_t[]> data_;
  size_t size_ = 0;
};

struct ThreadScratch {
  Scratch a, b;
};

ThreadScratch& thread_scratch() {
  thread_local ThreadScratch s;
  return s;
}

// Trims the thread's scratch when an encode_tensor call ends, exceptions included.
struct TrimScratch {
  ~TrimScratch() {
    thread_scratch().a.trim();
    thread_scratch().b.trim();
  }
};

// Elements split and counted per block: the block's planes are still in L1 when counted.
constexpr size_t kBlockElements = 8192;

// The coder and its options for the planes of one tensor.
struct PlaneCoding {
  PlaneCoder coder;
  RansOptions rans;
  ZstdOptions zstd;
};

// The chosen coder where it pays, raw otherwise. `counts` is histogram(plane). A raw payload
// is `*owned` (moved, not copied) when the caller passes the vector that holds the plane.
// classes: code with class tables (rans_encode_classes) instead of one table.
CodedPlane code_plane(const std::string& role, ByteSpan plane, const Histogram& counts, const PlaneCoding& coding,
                      std::vector<uint8_t>* owned = nullptr, const ClassMap* classes = nullptr) {
  CodedPlane out;
  out.record.role = role;
  out.record.symbols = plane.size();
  out.record.entropy_bits = entropy_bits(counts);
  const double limit = double(plane.size()) * (is_mantissa_role(role) ? 1.0 - kMinMantissaSaving : 1.0);
  const bool zstd = coding.coder == PlaneCoder::Zstd;
  // Exp4 takes the exponents of BF16 tensors (coding_for chose it), rANS every other plane.
  const bool exp4 = coding.coder == PlaneCoder::Exp4 && role == "exponent" && classes == nullptr;
  // No order-0 coder beats the order-0 entropy of its input: when even that bound would not
  // pay, the plane is stored raw without spending an encode on it (mantissa planes, mostly).
  // Zstd also finds repeats, so it is always tried.
  // Exp4 tensors keep their mantissas raw: the GPU multiplies them as they lie.
  const bool worth_trying = !plane.empty() && !(coding.coder == PlaneCoder::Exp4 && is_mantissa_role(role)) &&
                            (zstd || out.record.entropy_bits * double(plane.size()) / 8.0 < limit);
  std::vector<uint8_t> coded;
  if (exp4 && !plane.empty()) {
    coded = exp4_encode(plane, counts);
  } else if (worth_trying && zstd) {
    coded = zstd_encode(plane, coding.zstd);
  } else if (worth_trying) {
    coded = classes != nullptr ? rans_encode_classes(plane, coding.rans, *classes)
                               : rans_encode(plane, coding.rans, counts);
  }
  if (!coded.empty() && double(coded.size()) < limit) {
    out.record.codec = exp4 ? PlaneCodec::Exp4 : zstd ? PlaneCodec::Zstd : PlaneCodec::Rans;
    out.payload = std::move(coded);
  } else {
    out.record.codec = PlaneCodec::Raw;
    if (owned != nullptr) {
      out.payload = std::move(*owned);
    } else {
      out.payload.assign(plane.begin(), plane.end());
    }
  }
  out.record.size = out.payload.size();
  out.record.payload_xxh3 = format::xxh3_64(out.payload.data(), out.payload.size());
  return out;
}

void add_plane(EncodedTensor& t, CodedPlane p) {
  t.record.planes.push_back(std::move(p.record));
  t.payloads.push_back(std::move(p.payload));
}

uint64_t row_length(const std::vector<uint64_t>& shape) {
  uint64_t cols = 1;
  for (size_t i = 1; i < shape.size(); ++i) cols *= shape[i];
  return cols;
}

// Chunks of a matrix hold whole rows where the row length allows it (a multiple of the 32
// lanes): the most rows that fit the requested chunk size, at least one. Then no row spans two
// chunks, and a GPU warp that decodes a chunk can finish every product of its rows by itself
// (cuda/decode_gemv_kernel.cu) instead of decoding the next chunk's start a second time.
PlaneCoding coding_for(const std::vector<uint64_t>& shape, DType dtype, const EncodeOptions& options) {
  PlaneCoding c{options.coder, options.rans, options.zstd};
  if (c.coder == PlaneCoder::Exp4 && dtype != DType::BF16) c.coder = PlaneCoder::Rans;
  const uint64_t cols = shape.size() == 2 ? shape[1] : 0;
  if (!options.row_aligned_chunks || cols == 0 || cols % kRansLanes != 0 || cols > (uint64_t{1} << 30)) return c;
  c.rans.chunk_symbols = static_cast<uint32_t>(std::max<uint64_t>(1, c.rans.chunk_symbols / cols) * cols);
  return c;
}

void add_scales(EncodedTensor& t, const std::vector<float>& scales) {
  const auto* sbytes = reinterpret_cast<const uint8_t*>(scales.data());
  CodedPlane p;
  p.record.role = "scales";
  p.record.codec = PlaneCodec::Raw;
  p.payload.assign(sbytes, sbytes + scales.size() * sizeof(float));
  p.record.symbols = p.record.size = p.payload.size();
  p.record.entropy_bits = entropy_bits(histogram(p.payload));
  p.record.payload_xxh3 = format::xxh3_64(p.payload.data(), p.payload.size());
  add_plane(t, std::move(p));
}

// Quantizes row by row straight from the source bytes (quantize_rows bit for bit, without a
// float copy of the tensor) and counts each row's values, and its LEFT residuals (computed once,
// into scratch) when the predictor may be tried, while the row is in L1. Returns false if a
// value is NaN or Inf.
bool encode_int8(EncodedTensor& t, DType dtype, ByteSpan data, uint64_t rows, uint64_t cols,
                 const EncodeOptions& options) {
  const size_t n = static_cast<size_t>(rows * cols);
  if (data.size() != n * dtype_size(dtype)) throw Error("tensor '" + t.record.name + "': size does not match shape");
  uint8_t* plain = thread_scratch().a.get(n);
  std::vector<float> scales(rows);
  // The GPU assembles zstd planes without a prefix sum: zstd int8 values go unpredicted.
  const bool predict = options.predictor != PredictorChoice::Off && options.coder != PlaneCoder::Zstd && cols > 1;
  uint8_t* residual = predict ? thread_scratch().b.get(n) : nullptr;
  HistogramBuilder plain_counts, residual_counts;
  for (uint64_t r = 0; r < rows; ++r) {
    uint8_t* row = plain + r * cols;
    if (!quantize_row(dtype, data.data() + r * cols * dtype_size(dtype), cols, reinterpret_cast<int8_t*>(row),
                      scales[r])) {
      return false;
    }
    plain_counts.add(row, cols);
    if (predict) {
      uint8_t* row_residual = residual + r * cols;
      delta_left_encode(ByteSpan(row, cols), cols, MutableByteSpan(row_residual, cols));
      residual_counts.add(row_residual, cols);
    }
  }
  t.record.mode = TensorMode::Int8;
  t.record.transform = Transform::Int8Rows;
  t.record.decoded_xxh3 = format::xxh3_64(plain, n);
  t.record.decoded_size = n;
  const PlaneCoding coding = coding_for(t.record.shape, t.record.dtype, options);
  CodedPlane best = code_plane("int8", ByteSpan(plain, n), plain_counts.result(), coding);
  if (predict) {
    t.predictor_tried = true;
    const Histogram counts = residual_counts.result();
    // Skip the second encode when the residuals' entropy bound cannot beat the plain coding.
    const double bound = entropy_bits(counts) * double(n) / 8.0;
    if (options.predictor == PredictorChoice::On || bound < double(best.payload.size())) {
      CodedPlane delta = code_plane("int8", ByteSpan(residual, n), counts, coding);
      if (options.predictor == PredictorChoice::On || delta.payload.size() < best.payload.size()) {
        best = std::move(delta);
        t.record.predictor = format::Predictor::Left;
      }
    }
  }
  add_plane(t, std::move(best));
  add_scales(t, scales);
  return true;
}

bool is_embedding(const std::string& name) {
  return name.find("embed_tokens") != std::string::npos || name.find("wte") != std::string::npos;
}

// Class tables decode on the GPU through a simpler kernel than the per-layer decoders
// (cuda/decode_class_kernel.cu), so they are used only for the matrices engines decode once,
// at load: token embeddings and output heads, which are also where they gain (different token
// scales by row, different hidden-channel scales by column).
bool wants_class_tables(const TensorRecord& r, const EncodeOptions& options) {
  if (!options.class_tables || options.coder != PlaneCoder::Rans || r.dtype != DType::BF16 || r.shape.size() != 2)
    return false;
  return is_embedding(r.name) || r.name.find("lm_head") != std::string::npos;
}

void encode_lossless(EncodedTensor& t, ByteSpan data, const EncodeOptions& options) {
  const size_t width = dtype_size(t.record.dtype);
  t.record.mode = TensorMode::Lossless;
  t.record.transform = width == 0 ? Transform::None : lossless_transform(t.record.dtype);
  t.record.decoded_size = data.size();
  t.record.decoded_xxh3 = format::xxh3_64(data.data(), data.size());
  const std::vector<std::string> roles = plane_roles(t.record.transform, width == 0 ? 1 : width);
  const PlaneCoding coding = coding_for(t.record.shape, t.record.dtype, options);
  if (t.record.transform == Transform::None) {  // one plane: the bytes themselves
    add_plane(t, code_plane(roles[0], data, histogram(data), coding));
    return;
  }
  // Mantissa planes are nearly always stored raw: split into vectors that can become their
  // payloads. The others (exponents) are nearly always coded: split into scratch.
  const size_t n = data.size() / width;
  std::vector<std::vector<uint8_t>> owned(roles.size());
  size_t scratch_planes = 0;
  for (const auto& role : roles) scratch_planes += !is_mantissa_role(role);
  uint8_t* scratch = thread_scratch().a.get(scratch_planes * n);
  std::vector<uint8_t*> planes;
  for (size_t k = 0; k < roles.size(); ++k) {
    if (is_mantissa_role(roles[k])) {
      owned[k].resize(n);
      planes.push_back(owned[k].data());
    } else {
      planes.push_back(scratch);
      scratch += n;
    }
  }
  // Split and count block by block: each block's planes are counted while still in L1.
  std::vector<HistogramBuilder> counts(roles.size());
  std::vector<uint8_t*> at(planes.size());
  for (size_t i = 0; i < n; i += kBlockElements) {
    const size_t m = std::min(kBlockElements, n - i);
    for (size_t k = 0; k < planes.size(); ++k) at[k] = planes[k] + i;
    split_planes_into(t.record.transform, width, data.data() + i * width, m, at.data());
    for (size_t k = 0; k < planes.size(); ++k) counts[k].add(at[k], m);
  }
  for (size_t k = 0; k < roles.size(); ++k) {
    const ByteSpan plane(planes[k], n);
    std::optional<ClassMap> classes;
    if (roles[k] == "exponent" && wants_class_tables(t.record, options))
      classes = choose_classes(plane, t.record.shape[0], t.record.shape[1]);
    add_plane(t, code_plane(roles[k], plane, counts[k].result(), coding,
                            is_mantissa_role(roles[k]) ? &owned[k] : nullptr, classes ? &*classes : nullptr));
  }
  if (options.coder == PlaneCoder::Zstd) {
    // Zstd models bytes in context, so whole values may beat byte planes: keep the smaller.
    CodedPlane whole = code_plane("bytes", data, histogram(data), coding);
    uint64_t planes_bytes = 0;
    for (const auto& p : t.record.planes) planes_bytes += p.size;
    if (whole.record.codec == PlaneCodec::Zstd && whole.payload.size() < planes_bytes) {
      t.record.transform = Transform::None;
      t.record.planes.clear();
      t.payloads.clear();
      add_plane(t, std::move(whole));
    }
  }
}

}  // namespace

PlaneCoder plane_coder_named(const std::string& name) {
  if (name == "rans") return PlaneCoder::Rans;
  if (name == "zstd") return PlaneCoder::Zstd;
  if (name == "exp4") return PlaneCoder::Exp4;
  throw Error("unknown coder '" + name + "' (rans, exp4, zstd)");
}

bool wants_int8(const std::string& name, DType dtype, const std::vector<uint64_t>& shape,
                const EncodeOptions& options) {
  if (options.mode != TensorMode::Int8 || !is_codec_float(dtype) || shape.size() != 2) return false;
  if (shape[0] == 0 || shape[1] == 0) return false;
  return !is_embedding(name) || options.quantize_embeddings;
}

EncodedTensor encode_tensor(const std::string& name, DType dtype, const std::vector<uint64_t>& shape, ByteSpan data,
                            const EncodeOptions& options) {
  const TrimScratch trim;
  EncodedTensor t;
  t.record.name = name;
  t.record.shape = shape;
  t.record.dtype = dtype;
  if (wants_int8(name, dtype, shape, options)) {
    if (encode_int8(t, dtype, data, shape[0], row_length(shape), options)) return t;
    t.note = "kept lossless: holds NaN or Inf";
  }
  encode_lossless(t, data, options);
  return t;
}

void decode_plane(const PlaneRecord& plane, ByteSpan payload, MutableByteSpan out, const std::string& what) {
  if (out.size() != plane.symbols) throw FormatError(what + ": plane '" + plane.role + "' has the wrong size");
  if (plane.codec == PlaneCodec::Raw) {
    if (payload.size() != out.size()) throw FormatError(what + ": raw plane '" + plane.role + "' size mismatch");
    if (!out.empty()) std::memcpy(out.data(), payload.data(), out.size());
    return;
  }
  std::string where = what + ": plane '" + plane.role + "'";
  if (plane.codec == PlaneCodec::Zstd) {
    zstd_decode(payload, out, where.c_str());
  } else if (plane.codec == PlaneCodec::Exp4) {
    exp4_decode(payload, out, where.c_str());
  } else {
    rans_decode(payload, out, where.c_str());
  }
}

DecodedTensor decode_tensor(const TensorRecord& record, const PayloadFn& payload_of, const std::string& what) {
  const std::string where = what + ": tensor '" + record.name + "'";
  DecodedTensor out;
  const uint64_t n = record.num_elements();
  if (record.mode == TensorMode::Int8) {
    const PlaneRecord* q = record.plane("int8");
    const PlaneRecord* s = record.plane("scales");
    if (record.transform != Transform::Int8Rows || q == nullptr || s == nullptr || record.shape.size() < 2 ||
        q->symbols != n || s->symbols != record.shape[0] * sizeof(float)) {
      throw FormatError(where + ": malformed int8 record");
    }
    out.bytes.resize(n);
    decode_plane(*q, payload_of(*q), out.bytes, where);
    if (record.predictor == format::Predictor::Left) delta_left_decode(out.bytes, row_length(record.shape));
    out.scales.resize(record.shape[0]);
    ByteSpan sp = payload_of(*s);
    if (sp.size() != out.scales.size() * sizeof(float)) throw FormatError(where + ": scales size mismatch");
    if (!sp.empty()) std::memcpy(out.scales.data(), sp.data(), sp.size());
  } else {
    size_t width = dtype_size(record.dtype);
    std::vector<std::string> roles = plane_roles(record.transform, width == 0 ? 1 : width);
    if (record.planes.size() != roles.size()) throw FormatError(where + ": wrong number of planes");
    uint64_t per_plane = record.transform == Transform::None ? record.decoded_size : n;
    std::vector<std::vector<uint8_t>> planes(roles.size());
    std::vector<ByteSpan> views;
    for (size_t k = 0; k < roles.size(); ++k) {
      const PlaneRecord& p = record.planes[k];
      if (p.role != roles[k] || p.symbols != per_plane)
        throw FormatError(where + ": unexpected plane '" + p.role + "'");
      planes[k].resize(per_plane);
      decode_plane(p, payload_of(p), planes[k], where);
      views.emplace_back(planes[k].data(), planes[k].size());
    }
    out.bytes.resize(record.decoded_size);
    merge_planes(record.transform, width == 0 ? 1 : width, views, out.bytes);
  }
  if (format::xxh3_64(out.bytes.data(), out.bytes.size()) != record.decoded_xxh3)
    throw FormatError(where + ": decoded bytes fail their checksum");
  return out;
}

}  // namespace codecllm::codec
