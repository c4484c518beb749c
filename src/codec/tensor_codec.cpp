#include "codec/tensor_codec.hpp"

#include <algorithm>
#include <cstring>

#include "codec/byte_planes.hpp"
#include "codec/delta.hpp"
#include "codec/freq_table.hpp"
#include "codec/int8_quant.hpp"
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

// rANS where it pays, raw otherwise.
CodedPlane code_plane(const std::string& role, std::vector<uint8_t> plane, const RansOptions& rans) {
  CodedPlane out;
  out.record.role = role;
  out.record.symbols = plane.size();
  const Histogram counts = histogram(plane);
  out.record.entropy_bits = entropy_bits(counts);
  const double limit = double(plane.size()) * (is_mantissa_role(role) ? 1.0 - kMinMantissaSaving : 1.0);
  // No coder beats the order-0 entropy of its input: when even that bound would not pay,
  // the plane is stored raw without spending an encode on it (mantissa planes, mostly).
  const bool worth_trying = !plane.empty() && out.record.entropy_bits * double(plane.size()) / 8.0 < limit;
  std::vector<uint8_t> coded = worth_trying ? rans_encode(plane, rans, counts) : std::vector<uint8_t>{};
  if (worth_trying && double(coded.size()) < limit) {
    out.record.codec = PlaneCodec::Rans;
    out.payload = std::move(coded);
  } else {
    out.record.codec = PlaneCodec::Raw;
    out.payload = std::move(plane);
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
RansOptions chunks_for(const std::vector<uint64_t>& shape, const EncodeOptions& options) {
  RansOptions r = options.rans;
  const uint64_t cols = shape.size() == 2 ? shape[1] : 0;
  if (!options.row_aligned_chunks || cols == 0 || cols % kRansLanes != 0 || cols > (uint64_t{1} << 30)) return r;
  r.chunk_symbols = static_cast<uint32_t>(std::max<uint64_t>(1, r.chunk_symbols / cols) * cols);
  return r;
}

void add_scales(EncodedTensor& t, const QuantizedMatrix& m);

void encode_int8(EncodedTensor& t, const QuantizedMatrix& m, uint64_t cols, const EncodeOptions& options) {
  const RansOptions rans = chunks_for(t.record.shape, options);
  const auto* qbytes = reinterpret_cast<const uint8_t*>(m.q.data());
  std::vector<uint8_t> plain(qbytes, qbytes + m.q.size());
  t.record.decoded_xxh3 = format::xxh3_64(plain.data(), plain.size());
  t.record.decoded_size = plain.size();
  CodedPlane best = code_plane("int8", plain, rans);
  if (options.predictor != PredictorChoice::Off && cols > 1) {
    t.predictor_tried = true;
    std::vector<uint8_t> residual(plain.size());
    delta_left_encode(plain, cols, residual);
    // Skip the second encode when the residuals' entropy bound cannot beat the plain coding.
    const double bound = entropy_bits(histogram(residual)) * double(residual.size()) / 8.0;
    if (options.predictor == PredictorChoice::Auto && bound >= double(best.payload.size())) {
      add_plane(t, std::move(best));
      add_scales(t, m);
      return;
    }
    CodedPlane delta = code_plane("int8", std::move(residual), rans);
    if (options.predictor == PredictorChoice::On || delta.payload.size() < best.payload.size()) {
      best = std::move(delta);
      t.record.predictor = format::Predictor::Left;
    }
  }
  add_plane(t, std::move(best));
  add_scales(t, m);
}

void add_scales(EncodedTensor& t, const QuantizedMatrix& m) {
  const auto* sbytes = reinterpret_cast<const uint8_t*>(m.scales.data());
  CodedPlane scales;
  scales.record.role = "scales";
  scales.record.codec = PlaneCodec::Raw;
  scales.payload.assign(sbytes, sbytes + m.scales.size() * sizeof(float));
  scales.record.symbols = scales.record.size = scales.payload.size();
  scales.record.entropy_bits = entropy_bits(histogram(scales.payload));
  scales.record.payload_xxh3 = format::xxh3_64(scales.payload.data(), scales.payload.size());
  add_plane(t, std::move(scales));
}

}  // namespace

bool wants_int8(const std::string& name, DType dtype, const std::vector<uint64_t>& shape,
                const EncodeOptions& options) {
  if (options.mode != TensorMode::Int8 || !is_codec_float(dtype) || shape.size() != 2) return false;
  if (shape[0] == 0 || shape[1] == 0) return false;
  bool embedding = name.find("embed_tokens") != std::string::npos || name.find("wte") != std::string::npos;
  return !embedding || options.quantize_embeddings;
}

EncodedTensor encode_tensor(const std::string& name, DType dtype, const std::vector<uint64_t>& shape, ByteSpan data,
                            const EncodeOptions& options) {
  EncodedTensor t;
  t.record.name = name;
  t.record.shape = shape;
  t.record.dtype = dtype;
  if (wants_int8(name, dtype, shape, options)) {
    std::vector<float> w = to_float(dtype, data);
    if (all_finite(w)) {
      t.record.mode = TensorMode::Int8;
      t.record.transform = Transform::Int8Rows;
      encode_int8(t, quantize_rows(w, shape[0], row_length(shape)), row_length(shape), options);
      return t;
    }
    t.note = "kept lossless: holds NaN or Inf";
  }
  size_t width = dtype_size(dtype);
  t.record.mode = TensorMode::Lossless;
  t.record.transform = width == 0 ? Transform::None : lossless_transform(dtype);
  t.record.decoded_size = data.size();
  t.record.decoded_xxh3 = format::xxh3_64(data.data(), data.size());
  std::vector<std::string> roles = plane_roles(t.record.transform, width);
  auto planes = split_planes(t.record.transform, width == 0 ? 1 : width, data);
  const RansOptions rans = chunks_for(shape, options);
  for (size_t k = 0; k < planes.size(); ++k) add_plane(t, code_plane(roles[k], std::move(planes[k]), rans));
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
  rans_decode(payload, out, where.c_str());
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
