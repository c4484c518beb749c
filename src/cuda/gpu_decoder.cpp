#include "cuda/gpu_decoder.hpp"

#include <algorithm>
#include <limits>
#include <optional>

#include "codec/exp4_plane.hpp"
#include "codec/rans.hpp"
#include "codec/zstd_plane.hpp"
#include "codecllm/bytes.hpp"
#include "codecllm/error.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/decode_class.hpp"
#include "cuda/decode_launch.hpp"
#include "cuda/exp4_row_slots.hpp"

namespace codecllm::cuda {

using format::PlaneCodec;
using format::TensorMode;
using format::Transform;

namespace {

constexpr uint32_t kRawOnlyChunk = 1u << 16;  // work split of tensors with no coded plane
constexpr uint64_t kNoScratch = std::numeric_limits<uint64_t>::max();
constexpr uint64_t kStreamAlignment = 16;

// Whether a plane's table can take the packed layout: every frequency fits 12 bits as freq - 1.
bool packable(const std::vector<uint32_t>& freq) {
  for (uint32_t f : freq)
    if (f > kPackedMaxFreq) return false;
  return true;
}

// The table a warp looks up for each slot t of a coded plane, with k = t - cum of the slot's
// symbol. Packed (every freq <= 2^12): one word (freq - 1) | symbol << 12 | k << 20 per slot,
// so that a step makes one random shared-memory load and its multiply-add needs one operation
// on the loaded word per operand (a mask, a fused shift-add), which keeps the step's chain of
// dependent operations short. Split (any freq, up to 2^15): 2^p words
// freq | k << 16, then 2^p bytes holding the slot's symbol.
void append_table(const codec::RansPlaneHeader& h, const std::vector<uint32_t>& freq, bool packed,
                  std::vector<uint32_t>& pool, const std::string& what) {
  const uint32_t p = h.prob_bits, M = 1u << p;
  const size_t words = pool.size();
  pool.resize(words + gpu_table_words(p, packed), 0);
  uint32_t cum = 0;
  for (uint32_t s = 0; s < h.num_symbols; ++s) {
    const uint32_t f = freq[s];
    const uint32_t symbol = h.min_symbol + s;
    if (cum + f > M) break;
    for (uint32_t k = 0; k < f; ++k) {
      const uint32_t slot = cum + k;
      if (packed) {
        pool[words + slot] = (f - 1) | symbol << 12 | k << 20;
      } else {
        pool[words + slot] = f | k << 16;
        pool[words + M + slot / 4] |= symbol << (8 * (slot % 4));  // little-endian bytes
      }
    }
    cum += f;
  }
  if (cum != M) throw FormatError(what + ": frequencies do not sum to 2^prob_bits");
}

// Where an int8 record's row scales lie in the compressed range starting at file offset lo.
uint64_t int8_scales_at(const format::TensorRecord& r, uint64_t lo, const std::string& what) {
  const format::PlaneRecord* s = r.plane("scales");
  if (s == nullptr || r.shape.size() < 2 || r.shape[0] == 0) throw FormatError(what + ": malformed int8 record");
  return s->offset - lo;
}

Assemble assemble_of(const format::TensorRecord& r) {
  if (r.mode == TensorMode::Int8) return Assemble::Int8;
  if (r.transform == Transform::FloatSplit) return dtype_size(r.dtype) == 2 ? Assemble::SplitBf16 : Assemble::SplitF32;
  return Assemble::Bytes;
}

// The exponent and sign_mantissa planes of a lossless BF16 tensor that a kernel of its own
// reads in place: each the tensor's size and 16-byte aligned in the range starting at lo.
void check_split_planes(const format::PlaneRecord& ep, const format::PlaneRecord& sp, uint64_t n, uint64_t lo,
                        const std::string& what) {
  for (const format::PlaneRecord* p : {&ep, &sp}) {
    if (p->symbols != n) throw FormatError(what + ": plane '" + p->role + "' size differs from the tensor");
    if ((p->offset - lo) % kStreamAlignment != 0)
      throw FormatError(what + ": plane '" + p->role + "' is not 16-byte aligned");
  }
}

// A plane's payload, its checksum verified (the kernels and nvCOMP trust it), a failure naming
// the plane (`pwhat`).
ByteSpan verified_payload(const format::ContainerReader& file, const format::PlaneRecord& p, const std::string& pwhat) {
  try {
    return file.payload(p);
  } catch (const FormatError& e) {
    throw FormatError(pwhat + ": " + e.what());
  }
}

// ---- Tensors with a class-table exponent plane (decode_class.hpp) ----

bool is_class_plane(const format::ContainerReader& file, const format::PlaneRecord& p) {
  return p.codec == PlaneCodec::Rans && codec::rans_is_class_plane(file.payload(p, /*verify=*/false));
}

// Plans tensor r if any of its planes uses class tables, else returns nullopt. The GPU decodes
// those only as the exponent plane of a lossless BF16 tensor (sign_mantissa raw, or RNS1 in the
// same chunks); anywhere else they are an error naming the file and tensor. The payloads are
// validated here (class ids, chunk bounds) and their tables appended to `pool`.
std::optional<ClassTensorDesc> plan_class_tensor(const format::ContainerReader& file, const format::TensorRecord& r,
                                                 uint64_t lo, const std::string& what, std::vector<uint32_t>& pool) {
  bool any = false;
  for (const format::PlaneRecord& p : r.planes) any = any || is_class_plane(file, p);
  if (!any) return std::nullopt;
  const format::PlaneRecord* ep = r.plane("exponent");
  const format::PlaneRecord* sp = r.plane("sign_mantissa");
  if (r.mode != TensorMode::Lossless || r.transform != Transform::FloatSplit || r.dtype != DType::BF16 ||
      r.planes.size() != 2 || ep == nullptr || sp == nullptr || !is_class_plane(file, *ep) ||
      is_class_plane(file, *sp)) {
    throw FormatError(what +
                      ": class-table (RNS2) planes are decoded on the GPU only as the exponent plane of a "
                      "lossless BF16 tensor");
  }
  const uint64_t n = r.num_elements();
  check_split_planes(*ep, *sp, n, lo, what);
  const std::string ewhat = what + " plane 'exponent'";
  const codec::RansClassPlane h = codec::rans_parse_class_plane(file.payload(*ep), ewhat.c_str());
  if (h.total_symbols != n) throw FormatError(ewhat + ": symbol count differs from the index");

  ClassTensorDesc t{};
  t.elements = n;
  t.cols = h.map.cols;
  t.axis = h.map.axis == codec::ClassAxis::Rows ? 0 : 1;
  t.chunk_symbols = h.chunk_symbols;
  t.num_chunks = h.num_chunks;
  const uint64_t at = ep->offset - lo;
  t.classes = at + h.classes_offset;
  t.exponent = {1, h.prob_bits, at + h.data_offset, at + h.chunk_ends_offset, pool.size()};
  for (uint32_t k = 0; k < h.map.num_tables; ++k) {
    codec::RansPlaneHeader table{};  // a class table as append_table takes it: all 256 symbols
    table.prob_bits = h.prob_bits;
    table.num_symbols = 256;
    append_table(table, h.freqs[k], false, pool, ewhat + " table " + std::to_string(k));
  }

  ClassPlaneDesc& s = t.sign_mantissa;
  s.bytes = sp->offset - lo;
  if (sp->codec == PlaneCodec::Raw) return t;
  const std::string swhat = what + " plane 'sign_mantissa'";
  const ByteSpan sp_payload = file.payload(*sp);
  const codec::RansPlaneHeader sh = codec::rans_parse_header(sp_payload, swhat.c_str());
  if (sh.total_symbols != n) throw FormatError(swhat + ": symbol count differs from the index");
  if (sh.chunk_symbols != h.chunk_symbols)
    throw Error(swhat + ": coded planes of one tensor must share a chunk size for the GPU decoder");
  s = {1, sh.prob_bits, s.bytes + sh.data_offset, s.bytes + codec::rans_chunk_ends_offset(sh), pool.size()};
  append_table(sh, codec::rans_frequencies(sp_payload, sh), false, pool, swhat);
  return t;
}

// ---- Tensors with an Exp4 exponent plane (codec/exp4_plane.hpp) ----

bool has_exp4_plane(const format::TensorRecord& r) {
  return std::any_of(r.planes.begin(), r.planes.end(), [](const auto& p) { return p.codec == PlaneCodec::Exp4; });
}

// An Exp4 tensor as planned: its descriptor, and the payload and layout of its exponent plane
// (for the products' escapes by row).
struct Exp4Plan {
  Exp4Desc desc;
  ByteSpan payload;
  codec::Exp4Layout layout;
};

// The plan of an Exp4 tensor: its payload's checksum verified and its escape table validated
// here, since the kernels trust both.
Exp4Plan plan_exp4_tensor(const format::ContainerReader& file, const format::TensorRecord& r, uint64_t lo,
                          const std::string& what) {
  const format::PlaneRecord* ep = r.plane("exponent");
  const format::PlaneRecord* sp = r.plane("sign_mantissa");
  if (r.mode != TensorMode::Lossless || r.transform != Transform::FloatSplit || r.dtype != DType::BF16 ||
      r.planes.size() != 2 || ep == nullptr || sp == nullptr || ep->codec != PlaneCodec::Exp4 ||
      sp->codec != PlaneCodec::Raw) {
    throw FormatError(what +
                      ": exp4 planes are decoded on the GPU only as the exponent plane of a lossless BF16 tensor "
                      "whose sign_mantissa plane is raw");
  }
  const uint64_t n = r.num_elements();
  check_split_planes(*ep, *sp, n, lo, what);
  const std::string pwhat = what + " plane 'exponent'";
  const ByteSpan payload = verified_payload(file, *ep, pwhat);
  const codec::Exp4Layout l = codec::exp4_parse(payload, pwhat.c_str());
  if (l.header.symbols != n) throw FormatError(pwhat + ": symbol count differs from the index");
  const uint64_t at = ep->offset - lo;
  Exp4Desc d{};
  d.codes = at + l.codes;
  d.escape_end = at + l.escape_end;
  d.escape_at = at + l.escape_at;
  d.escape_exp = at + l.escape_exp;
  d.sign_mantissa = sp->offset - lo;
  d.elements = n;
  d.cols = r.shape.size() == 2 && r.shape[0] > 0 ? n / r.shape[0] : 0;
  d.base_pair = l.header.base << 7 | l.header.base << 23;
  d.block_symbols = l.header.block_symbols;
  return {d, payload, l};
}

}  // namespace

bool GpuDecoder::exponents_only_eligible(const format::ContainerReader& file, const format::TensorRecord& r) {
  return r.mode == TensorMode::Lossless && r.transform == Transform::FloatSplit && r.dtype == DType::BF16 &&
         r.shape.size() == 2 && r.planes.size() == 2 && r.planes[0].role == "exponent" &&
         r.planes[0].codec == PlaneCodec::Rans && !is_class_plane(file, r.planes[0]) &&
         r.planes[1].role == "sign_mantissa" && r.planes[1].codec == PlaneCodec::Raw;
}

const uint8_t* GpuDecoder::resident_sign_mantissa(size_t i) const {
  if (resident_ == nullptr || !exponents_only(i)) return nullptr;
  return resident_ + sign_mantissa_[i];
}

void* GpuDecoder::device_alloc(uint64_t bytes) {
  void* p = nullptr;
  if (bytes == 0) return nullptr;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    throw CudaError(e, path_ + ": cannot allocate " + std::to_string(bytes) + " bytes of device memory for decoding (" +
                           std::to_string(device_bytes_) + " already held by this decoder): " + cudaGetErrorString(e));
  }
  allocations_.push_back(p);
  device_bytes_ += bytes;
  return p;
}

GpuDecoder::GpuDecoder(const format::ContainerReader& file, const std::vector<std::string>& names,
                       const DecoderOptions& options)
    : path_(file.path()) {
  if (names.size() > static_cast<size_t>(kMaxTensorsPerLaunch))
    throw Error(path_ + ": at most " + std::to_string(kMaxTensorsPerLaunch) + " tensors per GPU decoder");
  // The compressed range: from the first plane to the end of the last one.
  uint64_t lo = std::numeric_limits<uint64_t>::max(), hi = 0;
  for (const auto& name : names) {
    const format::TensorRecord* r = file.index().find_tensor(name);
    if (r == nullptr) throw Error(path_ + ": no tensor named '" + name + "'");
    records_.push_back(r);
    for (const auto& p : r->planes) {
      lo = std::min(lo, p.offset);
      hi = std::max(hi, p.offset + p.size);
    }
  }
  if (hi == 0) lo = 0;
  range_offset_ = lo;
  range_bytes_ = hi - lo;
  std::vector<uint32_t> pool;
  std::vector<BlockJob> per_layout[kNumLayouts];
  std::vector<BlockJob> gemv_jobs;  // by tensor, for decode_gemv
  std::vector<ZstdFrameJob> zstd_frames;
  std::vector<uint32_t> exp4_slot_words;  // the Exp4 tensors' escapes by row (cuda/exp4_row_slots.hpp)
  std::vector<uint64_t> exp4_slot_at;     // by Exp4 tensor: its first word there, kNoPlane for none
  uint64_t scratch = 0;
  for (size_t ti = 0; ti < records_.size(); ++ti) {
    const format::TensorRecord& r = *records_[ti];
    const std::string what = path_ + ": tensor '" + r.name + "'";
    TensorDesc t{};
    t.assemble = assemble_of(r);
    t.num_planes = static_cast<uint32_t>(t.assemble == Assemble::Int8 ? 1 : r.planes.size());
    t.elements = r.num_elements();
    t.element_size = t.assemble == Assemble::Int8 ? 1 : static_cast<uint32_t>(std::max<size_t>(1, dtype_size(r.dtype)));
    if (r.transform == Transform::None) t.elements = r.decoded_size;  // one byte per "element"
    if (has_exp4_plane(r)) {
      const Exp4Plan plan = plan_exp4_tensor(file, r, lo, what);
      Exp4Desc d = plan.desc;
      d.tensor = static_cast<uint32_t>(ti);
      Gemv gv;
      gv.exp4 = static_cast<int>(exp4_tensors_.size());
      // The products rewrite an escaped weight from the exponent they first give it, base + 15,
      // which must fit its byte.
      gv.ready = d.cols > 0 && d.cols % 8 == 0 && d.cols <= kMaxExp4Cols && d.elements <= UINT32_MAX &&
                 d.base() + codec::kExp4Escape <= 255;
      gv.gemm = gv.ready && exp4_gemm_takes(d);
      exp4_slot_at.push_back(kNoPlane);
      if (gv.ready) {  // the products' escapes by row, one table for the decoder's tensors
        const Exp4RowSlots slots = exp4_row_slots(plan.payload, plan.layout, d.elements / d.cols, d.cols);
        d.slots_per_row = slots.per_row;
        if (slots.per_row > 0) exp4_slot_at.back() = exp4_slot_words.size();
        exp4_slot_words.insert(exp4_slot_words.end(), slots.slots.begin(), slots.slots.end());
      }
      t.assemble = Assemble::SplitBf16;
      t.cols = d.cols;
      exp4_tensors_.push_back(d);
      host_tensors_.push_back(t);
      output_bytes_.push_back(t.elements * 2);
      scratch_offset_.push_back(kNoScratch);
      sign_mantissa_.push_back(kNoPlane);
      gemv_.push_back(gv);
      continue;
    }
    if (std::any_of(r.planes.begin(), r.planes.end(), [](const auto& p) { return p.codec == PlaneCodec::Zstd; })) {
      ZstdTensor z;
      z.tensor = ti;
      uint64_t out_bytes = t.elements * t.element_size;
      if (r.transform == Transform::None) {  // whole values: the plane is the output's bytes
        t.element_size = 1;
        out_bytes = t.elements;
      }
      if (t.assemble == Assemble::SplitF32 && options.f32_as_bf16) out_bytes = t.elements * 2;
      if (r.transform == Transform::None && options.f32_as_bf16 && r.dtype == DType::F32)
        throw Error(what + ": whole-value zstd planes of float32 cannot be narrowed to bfloat16 on the GPU");
      if (t.assemble == Assemble::Int8) {
        if (r.predictor != format::Predictor::None)
          throw FormatError(what + ": zstd int8 values with a predictor, which the GPU does not undo");
        z.scales = int8_scales_at(r, lo, what);
        t.cols = t.elements / r.shape[0];
        if (options.int8_output != Int8Out::Int8) out_bytes = t.elements * 2;
      }
      if (t.num_planes > static_cast<uint32_t>(kMaxPlanes)) throw Error(what + ": too many planes for the GPU decoder");
      z.assembly = {
          t.assemble,         t.num_planes, t.elements, t.cols, t.assemble == Assemble::SplitF32 && options.f32_as_bf16,
          options.int8_output};
      z.first_frame = zstd_frames.size();
      for (uint32_t k = 0; k < t.num_planes; ++k) {
        const format::PlaneRecord& pr = r.planes[k];
        if (pr.symbols != t.elements)
          throw FormatError(what + ": plane '" + pr.role + "' size differs from the tensor");
        if (pr.codec == PlaneCodec::Rans)
          throw Error(what + ": mixes rANS and zstd planes, which the GPU does not decode");
        if (pr.codec == PlaneCodec::Raw) {
          z.offset[k] = pr.offset - lo;
          continue;
        }
        // nvCOMP treats an invalid frame as undefined behaviour: the payload's checksum is verified here, and
        // the frame table parsed and bounded, before any frame can reach it.
        const std::string pwhat = what + " plane '" + pr.role + "'";
        const ByteSpan payload = verified_payload(file, pr, pwhat);
        const codec::ZstdPlaneHeader h = codec::zstd_parse_header(payload, pwhat.c_str());
        if (h.total_bytes != pr.symbols) throw FormatError(pwhat + ": decoded size differs from the index");
        z.in_scratch[k] = true;
        z.offset[k] = scratch;
        for (const codec::ZstdFrame& f : codec::zstd_frames(payload, h))
          zstd_frames.push_back({pr.offset - lo + f.begin, f.size, scratch + f.out, f.out_size});
        scratch += align_up(pr.symbols, 256);
      }
      z.num_frames = zstd_frames.size() - z.first_frame;
      zstd_tensors_.push_back(z);
      host_tensors_.push_back(t);
      output_bytes_.push_back(out_bytes);
      scratch_offset_.push_back(kNoScratch);
      sign_mantissa_.push_back(kNoPlane);
      gemv_.push_back(Gemv{});
      continue;
    }
    if (t.num_planes > static_cast<uint32_t>(kMaxPlanes) ||
        (t.assemble == Assemble::Bytes && t.num_planes != t.element_size))
      throw Error(what + ": unsupported plane layout for the GPU decoder");
    t.output = static_cast<uint32_t>(ti);
    t.int8_out = options.int8_output;
    t.chunk_symbols = 0;
    uint64_t out_bytes = t.elements * t.element_size;
    if (t.assemble == Assemble::SplitF32 && options.f32_as_bf16) {
      t.narrow_to_bf16 = 1;
      out_bytes = t.elements * 2;
    }
    scratch_offset_.push_back(kNoScratch);
    sign_mantissa_.push_back(kNoPlane);
    if (r.shape.size() == 2 && r.shape[0] > 0) t.cols = t.elements / r.shape[0];
    if (options.bf16_exponents_only && exponents_only_eligible(file, r)) {
      // The exponent plane decodes alone, as one byte plane; the raw plane stays where it is.
      t.assemble = Assemble::Bytes;
      t.num_planes = 1;
      t.element_size = 1;
      out_bytes = t.elements;
      sign_mantissa_.back() = r.planes[1].offset - lo;
    }
    // Class-table exponents: decoded by their own kernel, outside the block jobs and products.
    if (std::optional<ClassTensorDesc> c = plan_class_tensor(file, r, lo, what, pool)) {
      c->tensor = static_cast<uint32_t>(ti);
      class_tensors_.push_back(*c);
      host_tensors_.push_back(t);
      output_bytes_.push_back(out_bytes);
      gemv_.push_back(Gemv{});
      continue;
    }
    if (t.assemble == Assemble::Int8) {
      t.scales = int8_scales_at(r, lo, what);
      t.cols = t.elements / r.shape[0];
      if (r.shape[0] >= (uint64_t{1} << 32) || t.cols >= (uint64_t{1} << 31))
        throw Error(what + ": int8 matrices with 2^32 rows or 2^31 columns are not supported by the GPU decoder");
      t.predictor = r.predictor == format::Predictor::Left ? 1 : 0;
      if (options.int8_output != Int8Out::Int8) out_bytes = t.elements * 2;
      if (t.predictor && options.int8_output != Int8Out::Int8) {
        scratch_offset_.back() = scratch;
        scratch += align_up(t.elements, 256);
      }
    }
    uint32_t coded_mask = 0;
    struct CodedPlane {
      uint32_t index;
      codec::RansPlaneHeader header;
      std::vector<uint32_t> freq;
      std::string what;
    };
    std::vector<CodedPlane> coded;
    for (uint32_t k = 0; k < t.num_planes; ++k) {
      const format::PlaneRecord& pr = r.planes[k];
      PlaneDesc& pd = t.planes[k];
      pd.payload = pr.offset - lo;
      // The kernels copy planes into shared memory 16 bytes at a time (cp.async).
      if (pr.offset % kStreamAlignment != lo % kStreamAlignment)
        throw FormatError(what + ": plane '" + pr.role + "' is not 16-byte aligned with the tensor's other planes");
      if (pr.symbols != t.elements) throw FormatError(what + ": plane '" + pr.role + "' size differs from the tensor");
      if (pr.codec == PlaneCodec::Raw) continue;
      ByteSpan payload = file.payload(pr);  // checksum verified once, here
      const std::string pwhat = what + " plane '" + pr.role + "'";
      codec::RansPlaneHeader h = codec::rans_parse_header(payload, pwhat.c_str());
      if (h.total_symbols != pr.symbols) throw FormatError(pwhat + ": symbol count differs from the index");
      if (t.chunk_symbols != 0 && t.chunk_symbols != h.chunk_symbols)
        throw Error(pwhat + ": coded planes of one tensor must share a chunk size for the GPU decoder");
      t.chunk_symbols = h.chunk_symbols;
      pd.coded = 1;
      coded_mask |= 1u << k;
      pd.prob_bits = h.prob_bits;
      pd.data = pd.payload + h.data_offset;
      pd.chunk_ends = pd.payload + codec::rans_chunk_ends_offset(h);
      coded.push_back({k, h, codec::rans_frequencies(payload, h), pwhat});
    }
    // One table layout for the whole tensor, as its kernel instance expects: packed where every
    // plane allows it and the layout has a packed instance.
    bool packed = true;
    for (const CodedPlane& c : coded) packed = packed && packable(c.freq);
    auto table_words = [&](bool pack) {
      uint32_t n = 0;
      for (const CodedPlane& c : coded) n += gpu_table_words(c.header.prob_bits, pack);
      return n;
    };
    auto pick_layout = [&](bool pack) {
      return layout_of(t.assemble, t.num_planes, coded_mask, pack,
                       size_t{table_words(pack)} * 4 <= kMaxSharedTableBytes);
    };
    int layout = packed ? pick_layout(true) : -1;
    if (layout < 0) {
      packed = false;
      layout = pick_layout(false);
    }
    if (layout < 0) throw Error(what + ": unsupported element layout for the GPU decoder");
    uint32_t table_entries = 0;
    for (const CodedPlane& c : coded) {
      PlaneDesc& pd = t.planes[c.index];
      pd.table = pool.size();
      pd.table_offset = table_entries;
      table_entries += gpu_table_words(c.header.prob_bits, packed);
      append_table(c.header, c.freq, packed, pool, c.what);
    }
    t.table_entries = table_entries;
    t.tables_in_smem = size_t{table_entries} * 4 <= kMaxSharedTableBytes ? 1 : 0;
    if (t.chunk_symbols == 0) t.chunk_symbols = kRawOnlyChunk;
    if (t.tables_in_smem) shared_bytes_ = std::max<size_t>(shared_bytes_, size_t{table_entries} * 4);
    // Its blocks' work: as many chunks as the decode instance has warps a block, and
    // kWarpsPerBlock for a product.
    const uint64_t chunks = (t.elements + t.chunk_symbols - 1) / t.chunk_symbols;
    auto append_jobs = [&](std::vector<BlockJob>& to, uint64_t per_job) {
      for (uint64_t c = 0; c < chunks; c += per_job) {
        to.push_back({static_cast<uint32_t>(ti), static_cast<uint32_t>(c),
                      static_cast<uint32_t>(std::min<uint64_t>(per_job, chunks - c))});
      }
    };
    append_jobs(per_layout[layout], static_cast<uint64_t>(layout_warps(layout)));
    host_tensors_.push_back(t);
    output_bytes_.push_back(out_bytes);
    // The fused product: the layouts it has instances for, rows it can split into rounds.
    Gemv gv;
    const bool bf16 = t.assemble == Assemble::SplitBf16 && coded_mask == 0b01 && r.dtype == DType::BF16;
    const bool int8 =
        t.assemble == Assemble::Int8 && coded_mask == 0b1 && t.predictor == 0 && options.int8_output == Int8Out::Int8;
    const uint64_t round = int8 ? 512 : 256;
    gv.ready = (bf16 || int8) && t.tables_in_smem && t.cols > 0 && t.cols % round == 0 && t.cols <= t.chunk_symbols &&
               t.chunk_symbols % 512 == 0 && t.cols < (uint64_t{1} << 31);
    gv.packed = packed;
    gv.first_job = static_cast<uint32_t>(gemv_jobs.size());
    if (gv.ready) append_jobs(gemv_jobs, kWarpsPerBlock);
    gv.num_jobs = static_cast<uint32_t>(gemv_jobs.size()) - gv.first_job;
    gemv_.push_back(gv);
  }
  host_range_ = ByteSpan(nullptr, 0);
  if (range_bytes_ > 0) {
    format::PlaneRecord whole{"range", PlaneCodec::Raw, range_offset_, range_bytes_, range_bytes_, 0, 0};
    host_range_ = file.payload(whole, /*verify=*/false);
  }
  // Jobs grouped by layout: one launch per layout present (one for a lossless BF16 layer).
  std::vector<BlockJob> jobs;
  for (int l = 0; l < kNumLayouts; ++l) {
    if (per_layout[l].empty()) continue;
    launches_.push_back({l, static_cast<uint32_t>(jobs.size()), static_cast<uint32_t>(per_layout[l].size())});
    jobs.insert(jobs.end(), per_layout[l].begin(), per_layout[l].end());
  }

  d_tensors_ = static_cast<TensorDesc*>(device_alloc(host_tensors_.size() * sizeof(TensorDesc)));
  d_jobs_ = static_cast<BlockJob*>(device_alloc(jobs.size() * sizeof(BlockJob)));
  d_tables_ = static_cast<uint32_t*>(device_alloc(pool.size() * sizeof(uint32_t)));
  d_status_ = static_cast<uint32_t*>(device_alloc(host_tensors_.size() * sizeof(uint32_t)));
  // nvCOMP's temporary buffer goes in the scratch after the zstd planes: shared, like them, by
  // decoders whose decodes never overlap (one scratch per decode stream in the engine).
  const uint64_t zstd_temp_at = scratch;
  if (!zstd_frames.empty()) scratch += align_up(ZstdBatch::temp_bytes(zstd_frames, path_), 256);
  scratch_bytes_ = scratch;
  if (!options.external_scratch) d_scratch_ = static_cast<uint8_t*>(device_alloc(scratch));
  if (!zstd_frames.empty()) {
    zstd_ = std::make_unique<ZstdBatch>(
        std::move(zstd_frames), zstd_temp_at, [this](uint64_t n) { return device_alloc(n); }, path_);
  }
  if (!host_tensors_.empty()) {
    CLLM_CUDA_CHECK(cudaMemcpy(d_tensors_, host_tensors_.data(), host_tensors_.size() * sizeof(TensorDesc),
                               cudaMemcpyHostToDevice));
  }
  if (!jobs.empty())
    CLLM_CUDA_CHECK(cudaMemcpy(d_jobs_, jobs.data(), jobs.size() * sizeof(BlockJob), cudaMemcpyHostToDevice));
  auto* d_slots = static_cast<uint32_t*>(device_alloc(exp4_slot_words.size() * sizeof(uint32_t)));
  if (!exp4_slot_words.empty()) {
    CLLM_CUDA_CHECK(
        cudaMemcpy(d_slots, exp4_slot_words.data(), exp4_slot_words.size() * sizeof(uint32_t), cudaMemcpyHostToDevice));
  }
  for (size_t i = 0; i < exp4_tensors_.size(); ++i)
    exp4_tensors_[i].row_slots = exp4_slot_at[i] == kNoPlane ? nullptr : d_slots + exp4_slot_at[i];
  d_exp4_ = static_cast<Exp4Desc*>(device_alloc(exp4_tensors_.size() * sizeof(Exp4Desc)));
  if (!exp4_tensors_.empty()) {
    CLLM_CUDA_CHECK(
        cudaMemcpy(d_exp4_, exp4_tensors_.data(), exp4_tensors_.size() * sizeof(Exp4Desc), cudaMemcpyHostToDevice));
  }
  d_gemv_jobs_ = static_cast<BlockJob*>(device_alloc(gemv_jobs.size() * sizeof(BlockJob)));
  if (!gemv_jobs.empty()) {
    CLLM_CUDA_CHECK(
        cudaMemcpy(d_gemv_jobs_, gemv_jobs.data(), gemv_jobs.size() * sizeof(BlockJob), cudaMemcpyHostToDevice));
  }
  if (!pool.empty())
    CLLM_CUDA_CHECK(cudaMemcpy(d_tables_, pool.data(), pool.size() * sizeof(uint32_t), cudaMemcpyHostToDevice));
  if (d_status_ != nullptr) CLLM_CUDA_CHECK(cudaMemset(d_status_, 0, host_tensors_.size() * sizeof(uint32_t)));
  // Those uploads ran on the legacy default stream, which callers' non-blocking streams do not
  // wait for, and a cudaMemcpy from pageable memory may return before its DMA lands: without
  // this, a first decode on a busy GPU could read stale descriptors, tables or status words
  // (seen as a false integrity failure under parallel ctest).
  CLLM_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));
}

GpuDecoder::~GpuDecoder() {
  for (void* p : allocations_) cudaFree(p);
}

void GpuDecoder::upload_resident(cudaStream_t stream) {
  if (resident_ == nullptr) resident_ = static_cast<uint8_t*>(device_alloc(range_bytes_));
  if (range_bytes_ > 0)
    CLLM_CUDA_CHECK(cudaMemcpyAsync(resident_, host_range_.data(), range_bytes_, cudaMemcpyHostToDevice, stream));
}

void GpuDecoder::set_blocks_per_sm(int blocks) {
  if (blocks < 0) throw Error(path_ + ": decode blocks per SM must be 0 (as many as fit) or more");
  int device = 0, sms = 0;
  CLLM_CUDA_CHECK(cudaGetDevice(&device));
  CLLM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  max_blocks_ = static_cast<uint32_t>(blocks) * static_cast<uint32_t>(sms);
}

void GpuDecoder::decode(const uint8_t* comp_device, void* const* outputs, cudaStream_t stream, uint8_t* scratch) {
  if (reinterpret_cast<uintptr_t>(comp_device) % kStreamAlignment != 0)
    throw Error(path_ + ": GPU decode needs the compressed bytes at a 16-byte aligned address");
  if (scratch == nullptr) scratch = d_scratch_;
  if (scratch == nullptr && scratch_bytes_ > 0) throw Error(path_ + ": GPU decode needs a scratch buffer");
  LaunchPointers ptrs{};
  for (size_t i = 0; i < host_tensors_.size(); ++i)
    ptrs.outputs[i] = scratch_offset_[i] == kNoScratch ? outputs[i] : scratch + scratch_offset_[i];
  for (const Launch& l : launches_) {
    launch_decode_chunks(l.layout, d_tensors_, d_jobs_ + l.first_job, l.num_jobs, d_tables_, comp_device, ptrs,
                         d_status_, shared_bytes_, max_blocks_, stream);
    CLLM_CUDA_CHECK(cudaGetLastError());
  }
  for (const ClassTensorDesc& c : class_tensors_) {
    void* out = outputs[c.tensor];
    if (reinterpret_cast<uintptr_t>(out) % 2 != 0)
      throw Error(path_ + ": tensor '" + records_[c.tensor]->name + "': GPU decode needs a 2-byte aligned output");
    launch_decode_classes(c, d_tables_, comp_device, static_cast<uint16_t*>(out), d_status_, stream);
    CLLM_CUDA_CHECK(cudaGetLastError());
  }
  if (zstd_) zstd_->decode(comp_device, scratch, stream);
  for (const ZstdTensor& z : zstd_tensors_) {
    const uint8_t* planes[kMaxPlanes] = {};
    for (uint32_t k = 0; k < z.assembly.num_planes; ++k)
      planes[k] = (z.in_scratch[k] ? scratch : comp_device) + z.offset[k];
    const float* scales = z.scales == kNoPlane ? nullptr : reinterpret_cast<const float*>(comp_device + z.scales);
    assemble_planes(z.assembly, planes, scales, outputs[z.tensor], stream);
  }
  for (const Exp4Desc& d : exp4_tensors_) {
    void* out = outputs[d.tensor];
    if (reinterpret_cast<uintptr_t>(out) % 2 != 0)
      throw Error(path_ + ": tensor '" + records_[d.tensor]->name + "': GPU decode needs a 2-byte aligned output");
    launch_exp4_decode(d, comp_device, out, d_status_, stream);
    CLLM_CUDA_CHECK(cudaGetLastError());
  }
  for (size_t i = 0; i < host_tensors_.size(); ++i) {
    const TensorDesc& t = host_tensors_[i];
    if (t.assemble != Assemble::Int8 || t.predictor == 0) continue;
    const uint8_t* residuals = static_cast<const uint8_t*>(ptrs.outputs[i]);
    launch_int8_rows(residuals, reinterpret_cast<const float*>(comp_device + t.scales), t.elements / t.cols, t.cols,
                     t.int8_out, static_cast<uint8_t*>(outputs[i]), stream);
    CLLM_CUDA_CHECK(cudaGetLastError());
  }
}

void GpuDecoder::decode_gemv(const uint8_t* comp_device, size_t first, size_t count, const void* x, bool x_f16, void* y,
                             GemvOut out, cudaStream_t stream, bool overlap) {
  if (first + count > gemv_.size()) throw Error(path_ + ": decode_gemv names tensors the decoder does not have");
  GemvArgs args{};
  args.x = x;
  args.y = y;
  args.out = out;
  const size_t y_bytes = out == GemvOut::Bf16 ? 2 : 4;
  uint64_t row = 0;
  for (size_t i = first; i < first + count; ++i) {
    if (!gemv_[i].ready) {
      throw Error(path_ + ": tensor '" + records_[i]->name +
                  "' cannot be multiplied straight from its compressed form");
    }
    if (host_tensors_[i].assemble != Assemble::Int8 && x_f16)
      throw Error(path_ + ": tensor '" + records_[i]->name + "' is BF16: its products take a BF16 x");
    args.y_row[i] = row;
    row += host_tensors_[i].elements / host_tensors_[i].cols;
  }
  // One launch per run of tensors of the same kernel instance (their jobs are consecutive).
  for (size_t i = first; i < first + count;) {
    if (gemv_[i].exp4 >= 0) {  // a run of Exp4 tensors of one row length, up to kMaxExp4PerGemv
      Exp4GemvArgs e{};
      e.x = x;
      e.y = static_cast<uint8_t*>(y) + args.y_row[i] * y_bytes;
      e.out = out;
      const size_t j = exp4_launch(i, first + count, e);
      launch_exp4_gemv(d_exp4_ + gemv_[i].exp4, e, comp_device, d_status_, overlap, stream);
      CLLM_CUDA_CHECK(cudaGetLastError());
      i = j;
      continue;
    }
    const bool int8 = host_tensors_[i].assemble == Assemble::Int8;
    const bool packed = gemv_[i].packed;
    size_t j = i, table_bytes = 0;
    uint32_t jobs = 0;
    for (; j < first + count && (host_tensors_[j].assemble == Assemble::Int8) == int8 && gemv_[j].packed == packed;
         ++j) {
      table_bytes = std::max(table_bytes, size_t{host_tensors_[j].table_entries} * 4);
      jobs += gemv_[j].num_jobs;
    }
    const GemvKind kind = !int8   ? (packed ? GemvKind::Bf16Packed : GemvKind::Bf16Split)
                          : x_f16 ? (packed ? GemvKind::Int8PackedXF16 : GemvKind::Int8SplitXF16)
                                  : (packed ? GemvKind::Int8PackedXBf16 : GemvKind::Int8SplitXBf16);
    launch_decode_gemv(kind, d_tensors_, d_gemv_jobs_ + gemv_[i].first_job, jobs, d_tables_, comp_device, d_status_,
                       table_bytes, args, overlap, stream);
    CLLM_CUDA_CHECK(cudaGetLastError());
    i = j;
  }
}

size_t GpuDecoder::exp4_launch(size_t i, size_t end, Exp4GemvArgs& e) const {
  e.cols = static_cast<uint32_t>(host_tensors_[i].cols);
  e.count = 0;
  uint64_t rows = 0;
  size_t j = i;
  for (; j < end && gemv_[j].exp4 >= 0 && host_tensors_[j].cols == e.cols && e.count < kMaxExp4PerGemv; ++j) {
    rows += host_tensors_[j].elements / e.cols;
    if (rows >= (uint64_t{1} << 31)) break;
    e.row_end[e.count++] = static_cast<uint32_t>(rows);
  }
  return j;
}

void GpuDecoder::decode_gemm(const uint8_t* comp_device, size_t first, size_t count, const void* x, int batch, float* y,
                             int ldy, bool accumulate, cudaStream_t stream, bool overlap) {
  if (first + count > gemv_.size()) throw Error(path_ + ": decode_gemm names tensors the decoder does not have");
  for (size_t i = first; i < first + count; ++i) {
    if (!gemv_[i].gemm) {
      throw Error(path_ + ": tensor '" + records_[i]->name +
                  "' cannot be multiplied straight from its compressed form at batch " + std::to_string(batch));
    }
  }
  uint64_t row = 0;
  for (size_t i = first; i < first + count;) {
    Exp4GemvArgs e{};
    e.x = x;
    e.y = y + row;
    e.out = accumulate ? GemvOut::F32Add : GemvOut::F32;
    e.batch = static_cast<uint32_t>(batch);
    e.ldy = static_cast<uint32_t>(ldy);
    const size_t j = exp4_launch(i, first + count, e);
    launch_exp4_gemm(d_exp4_ + gemv_[i].exp4, e, comp_device, d_status_, overlap, stream);
    CLLM_CUDA_CHECK(cudaGetLastError());
    row += e.row_end[e.count - 1];
    i = j;
  }
}

void GpuDecoder::decode_from_host(const uint8_t* comp_host, void* const* outputs, cudaStream_t stream,
                                  uint8_t* scratch) {
  if (staging_ == nullptr) staging_ = static_cast<uint8_t*>(device_alloc(range_bytes_));
  if (range_bytes_ > 0)
    CLLM_CUDA_CHECK(cudaMemcpyAsync(staging_, comp_host, range_bytes_, cudaMemcpyHostToDevice, stream));
  decode(staging_, outputs, stream, scratch);
}

void GpuDecoder::release_staging() {
  if (staging_ == nullptr) return;
  allocations_.erase(std::find(allocations_.begin(), allocations_.end(), staging_));
  cudaFree(staging_);
  device_bytes_ -= range_bytes_;
  staging_ = nullptr;
}

void GpuDecoder::check(cudaStream_t stream) {
  CLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (const int64_t bad = zstd_ ? zstd_->first_failure() : -1; bad >= 0) {
    for (const ZstdTensor& z : zstd_tensors_) {
      if (size_t(bad) >= z.first_frame && size_t(bad) < z.first_frame + z.num_frames) {
        throw FormatError(path_ + ": tensor '" + records_[z.tensor]->name + "': nvCOMP could not decode zstd frame " +
                          std::to_string(size_t(bad) - z.first_frame) + " (corrupt data)");
      }
    }
  }
  std::vector<uint32_t> status(host_tensors_.size());
  if (status.empty()) return;
  CLLM_CUDA_CHECK(cudaMemcpy(status.data(), d_status_, status.size() * sizeof(uint32_t), cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < status.size(); ++i) {
    if (status[i] == 0) continue;
    CLLM_CUDA_CHECK(cudaMemset(d_status_, 0, status.size() * sizeof(uint32_t)));
    CLLM_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));  // reset before any later decode, as above
    const char* unit = gemv_[i].exp4 >= 0 ? "escape block " : "chunk ";
    throw FormatError(path_ + ": tensor '" + records_[i]->name + "': GPU decode failed the integrity check in " + unit +
                      std::to_string(status[i] - 1) + " (corrupt data)");
  }
}

}  // namespace codecllm::cuda
