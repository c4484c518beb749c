#include "model/compress.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <numeric>
#include <regex>
#include <set>

#include "codec/int8_quant.hpp"
#include "codec/parallel_for.hpp"
#include "codecllm/error.hpp"
#include "format/checksum.hpp"
#include "format/container.hpp"
#include "model/checkpoint.hpp"
#include "model/in_order.hpp"
#include "model/safetensors.hpp"

namespace codecllm::model {

using format::PlaneCodec;
using format::TensorMode;

namespace {

double now_seconds() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

format::BlobRecord write_blob(format::ContainerWriter& w, const std::string& name, const std::string& bytes) {
  ByteSpan span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  return {name, w.add_payload(span), bytes.size(), format::xxh3_64(bytes.data(), bytes.size())};
}

// Bytes of a tensor before they are read: a generated tensor has no data until then.
uint64_t source_size(const TensorInfo& t) {
  if (!t.data.empty()) return t.data.size();
  uint64_t n = dtype_size(t.dtype);
  for (uint64_t d : t.shape) n *= d;
  return n;
}

TensorStats stats_of(const codec::EncodedTensor& t, uint64_t source_bytes, double seconds) {
  TensorStats s;
  s.name = t.record.name;
  s.elements = t.record.num_elements();
  s.source_bytes = source_bytes;
  s.seconds = seconds;
  s.int8 = t.record.mode == TensorMode::Int8;
  s.predictor_tried = t.predictor_tried;
  s.predictor_used = t.record.predictor == format::Predictor::Left;
  s.note = t.note;
  for (const auto& p : t.record.planes) {
    s.stored_bytes += p.size;
    if (p.codec != PlaneCodec::Raw) {
      s.coded_bytes += p.size;
      s.entropy_bytes += p.entropy_bits * static_cast<double>(p.symbols) / 8.0;
    }
  }
  return s;
}

}  // namespace

std::string tensor_group(const std::string& name) {
  static const std::regex layer_number(R"(\.(\d+)\.)");
  return std::regex_replace(name, layer_number, ".*.");
}

std::string layer_of(const std::string& name) {
  const size_t p = name.find(".layers.");
  return p == std::string::npos ? std::string() : name.substr(0, name.find('.', p + 8));
}

CompressResult compress_checkpoint(const std::string& src, const std::string& dst, const CompressOptions& options,
                                   const ProgressFn& progress) {
  return compress_checkpoint(*open_checkpoint(src), dst, options, progress);
}

CompressResult compress_checkpoint(const Checkpoint& source, const std::string& dst, const CompressOptions& options,
                                   const ProgressFn& progress) {
  const double t0 = now_seconds();
  const Checkpoint* ckpt = &source;
  format::ContainerWriter writer(dst);
  format::Index index;
  index.mode = options.encode.mode == TensorMode::Int8 ? "int8" : "lossless";
  index.source = ckpt->source();
  index.producer = "codecllm 0.1.0";
  index.blobs.push_back(write_blob(writer, "config.json", ckpt->config_json()));
  for (const auto& [name, bytes] : ckpt->extra_files()) index.blobs.push_back(write_blob(writer, name, bytes));

  // Every core encodes; tensors are written in checkpoint order as they complete. Memory: each
  // worker holds the source bytes of its tensor (made on demand by some checkpoints, dropped
  // once encoded), and tensors encoded but not yet written wait compressed; the source bytes of
  // all started but unwritten tensors stay within threads x the largest tensor. The largest
  // tensors (embeddings, lm_head) start first: one of them alone at the end would leave every
  // other core idle for its whole encode.
  const auto& tensors = ckpt->tensors();
  const unsigned threads = resolve_threads(options.threads);
  std::vector<uint64_t> size(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) size[i] = source_size(tensors[i]);
  const uint64_t largest = size.empty() ? 0 : *std::max_element(size.begin(), size.end());
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_partition(order.begin(), order.end(), [&](size_t i) { return 2 * size[i] >= largest; });
  struct Encoded {
    codec::EncodedTensor tensor;
    uint64_t source_bytes;
    double seconds;
  };
  CompressResult result;
  auto encode = [&](size_t i) {
    const TensorInfo& t = tensors[i];
    const TensorBytes bytes = ckpt->tensor_data(i);
    const double s0 = now_seconds();  // encoding only: making the bytes is the source's time
    codec::EncodedTensor e = codec::encode_tensor(t.name, t.dtype, t.shape, bytes.data, options.encode);
    return Encoded{std::move(e), bytes.data.size(), now_seconds() - s0};
  };
  auto write = [&](size_t i, Encoded& done) {
    codec::EncodedTensor& e = done.tensor;
    for (size_t k = 0; k < e.payloads.size(); ++k) e.record.planes[k].offset = writer.add_payload(e.payloads[k]);
    result.tensors.push_back(stats_of(e, done.source_bytes, done.seconds));
    index.tensors.push_back(std::move(e.record));
    if (progress) progress(i + 1, tensors.size(), result.tensors.back());
  };
  run_in_order<Encoded>(order, size, uint64_t(threads) * largest, threads, encode, write);
  writer.finish(index);
  result.seconds = now_seconds() - t0;
  format::MappedFile written(dst);
  result.file_bytes = written.size();
  return result;
}

VerifyResult verify_container(const std::string& file, const std::string& src, unsigned threads,
                              const std::function<void(size_t, size_t)>& progress) {
  format::ContainerReader reader(file);
  std::unique_ptr<Checkpoint> ckpt = open_checkpoint(src);
  VerifyResult result;
  std::mutex mutex;
  auto problem = [&](const std::string& p) {
    std::lock_guard<std::mutex> lock(mutex);
    result.problems.push_back(p);
  };
  const auto& tensors = ckpt->tensors();
  std::atomic<size_t> done{0};
  parallel_for(tensors.size(), threads, [&](size_t i) {
    const TensorInfo& t = tensors[i];
    const format::TensorRecord* rec = reader.index().find_tensor(t.name);
    if (rec == nullptr) return problem(t.name + ": missing from " + file);
    try {
      codec::DecodedTensor d = codec::decode_tensor(
          *rec, [&](const format::PlaneRecord& p) { return reader.payload(p); }, file);
      if (rec->shape != t.shape || rec->dtype != t.dtype) return problem(t.name + ": shape or dtype differs");
      if (rec->mode == TensorMode::Lossless) {
        if (d.bytes.size() != t.data.size() || std::memcmp(d.bytes.data(), t.data.data(), d.bytes.size()) != 0)
          return problem(t.name + ": decoded bytes differ from the source");
      } else {
        std::vector<float> w = codec::to_float(t.dtype, t.data);
        codec::QuantizedMatrix q = codec::quantize_rows(w, t.shape[0], t.shape.empty() ? 0 : w.size() / t.shape[0]);
        if (std::memcmp(q.q.data(), d.bytes.data(), q.q.size()) != 0)
          return problem(t.name + ": int8 values differ from the quantizer's output");
        if (std::memcmp(q.scales.data(), d.scales.data(), q.scales.size() * sizeof(float)) != 0)
          return problem(t.name + ": int8 scales differ from the quantizer's output");
      }
    } catch (const Error& e) {
      return problem(e.what());
    }
    std::lock_guard<std::mutex> lock(mutex);
    ++result.tensors_checked;
    if (progress) progress(++done, tensors.size());
  });
  std::set<std::string> source_names;
  for (const auto& t : tensors) source_names.insert(t.name);
  for (const auto& rec : reader.index().tensors)
    if (source_names.count(rec.name) == 0) result.problems.push_back(rec.name + ": in " + file + " but not in " + src);
  auto check_blob = [&](const std::string& name, const std::string& bytes) {
    if (!reader.has_blob(name)) return result.problems.push_back("carried file " + name + " is missing");
    ByteSpan b = reader.blob(name);
    if (b.size() != bytes.size() || std::memcmp(b.data(), bytes.data(), b.size()) != 0)
      return result.problems.push_back("carried file " + name + " differs from the source");
    ++result.blobs_checked;
  };
  check_blob("config.json", ckpt->config_json());
  for (const auto& [name, bytes] : ckpt->extra_files()) check_blob(name, bytes);
  return result;
}

void decompress_container(const std::string& file, const std::string& out_dir) {
  format::ContainerReader reader(file);
  const auto& records = reader.index().tensors;
  std::vector<std::vector<uint8_t>> storage(records.size());
  parallel_for(records.size(), 0, [&](size_t i) {
    const format::TensorRecord& rec = records[i];
    codec::DecodedTensor d = codec::decode_tensor(
        rec, [&](const format::PlaneRecord& p) { return reader.payload(p); }, file);
    if (rec.mode == TensorMode::Int8) {
      const uint64_t cols = rec.shape[0] == 0 ? 0 : rec.num_elements() / rec.shape[0];
      storage[i] = codec::dequantize_rows(reinterpret_cast<const int8_t*>(d.bytes.data()), d.scales, cols, rec.dtype);
    } else {
      storage[i] = std::move(d.bytes);
    }
  });
  std::vector<TensorInfo> tensors;
  for (size_t i = 0; i < records.size(); ++i) {
    TensorInfo t;
    t.name = records[i].name;
    t.dtype = records[i].dtype;
    t.dtype_name = dtype_name(records[i].dtype);
    t.shape = records[i].shape;
    t.data = ByteSpan(storage[i].data(), storage[i].size());
    tensors.push_back(std::move(t));
  }
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) throw IoError(out_dir + ": cannot create directory: " + ec.message());
  write_safetensors(out_dir + "/model.safetensors", tensors, {{"format", "pt"}});
  for (const auto& b : reader.index().blobs) {
    ByteSpan bytes = reader.blob(b.name);
    format::OutputFile out(out_dir + "/" + b.name);  // names were checked to be plain file names
    out.write(bytes.data(), bytes.size());
    out.commit();
  }
}

}  // namespace codecllm::model
