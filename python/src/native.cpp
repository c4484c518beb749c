// codecllm._native: the C++ core as the Python package sees it. nanobind, because it binds
// the existing C++ types directly (the C API covers decoding only) with a small runtime; the
// package passes torch tensors as raw device pointers and torch's current CUDA stream as a
// handle, so decoded weights go from the decoder's kernels straight into torch's memory.
#include <nanobind/nanobind.h>
#include <nanobind/stl/function.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "block_pipeline.hpp"
#include "codec/tensor_codec.hpp"
#include "codecllm/error.hpp"
#include "engine/device_split.hpp"
#include "engine/placement_plan.hpp"
#include "format/container.hpp"
#include "model/compress.hpp"
#ifdef CODECLLM_HAVE_CUDA
#include <cuda_runtime.h>

#include "block_handoff.hpp"
#include "cuda/gpu_decoder.hpp"
#include "cuda/host_rows.hpp"
#endif

namespace nb = nanobind;
using namespace codecllm;

namespace {

// A .cllm held open (memory-mapped) for as long as Python refers to it.
using File = std::shared_ptr<format::ContainerReader>;

nb::dict tensor_info(const format::TensorRecord& r) {
  nb::dict d;
  d["name"] = r.name;
  d["shape"] = r.shape;
  d["dtype"] = std::string(dtype_name(r.dtype));
  d["mode"] = std::string(format::tensor_mode_name(r.mode));
  d["decoded_bytes"] = r.decoded_size;
  uint64_t stored = 0;
  for (const auto& p : r.planes) stored += p.size;
  d["stored_bytes"] = stored;
  std::vector<std::string> codecs;
  for (const auto& p : r.planes) codecs.push_back(std::string(p.role) + ":" + format::plane_codec_name(p.codec));
  d["planes"] = codecs;
  d["elements"] = r.num_elements();
  return d;
}

const format::TensorRecord& record_of(const File& f, const std::string& name) {
  const format::TensorRecord* r = f->index().find_tensor(name);
  if (r == nullptr) throw Error(f->path() + ": no tensor named '" + name + "'");
  return *r;
}

nb::dict compress(const std::string& src, const std::string& dst, const std::string& mode, unsigned threads,
                  uint64_t chunk_symbols, bool one_table, const std::string& codec, int zstd_level,
                  const std::function<void(size_t, size_t, std::string)>& progress) {
  model::CompressOptions o;
  if (mode != "lossless" && mode != "int8") throw Error("mode must be 'lossless' or 'int8', got '" + mode + "'");
  o.encode.mode = mode == "int8" ? format::TensorMode::Int8 : format::TensorMode::Lossless;
  o.threads = threads;
  if (chunk_symbols > 0) o.encode.rans.chunk_symbols = uint32_t(chunk_symbols);
  o.encode.class_tables = !one_table;
  o.encode.coder = codec::plane_coder_named(codec);
  o.encode.zstd.level = zstd_level;
  model::ProgressFn report;
  if (progress) {
    report = [&](size_t done, size_t total, const model::TensorStats& last) {
      nb::gil_scoped_acquire gil;
      progress(done, total, last.name);
    };
  }
  model::CompressResult r;
  {
    nb::gil_scoped_release nogil;
    r = model::compress_checkpoint(src, dst, o, report);
  }
  nb::list tensors;
  for (const auto& t : r.tensors) {
    nb::dict d;
    d["name"] = t.name;
    d["elements"] = t.elements;
    d["source_bytes"] = t.source_bytes;
    d["stored_bytes"] = t.stored_bytes;
    d["int8"] = t.int8;
    tensors.append(d);
  }
  nb::dict out;
  out["tensors"] = tensors;
  out["file_bytes"] = r.file_bytes;
  out["seconds"] = r.seconds;
  return out;
}

// The block streamer's pipeline with its actions written down instead of carried out: what the
// tests of the streamer's logic drive (python/tests/test_streamer_logic.py), on any machine.
struct PipelineTrace {
  using BlockPipeline = python::BlockPipeline<PipelineTrace>;
  PipelineTrace(int blocks, int slots) : blocks(blocks), slots(slots) {}
  void enqueue(int b) { log.emplace_back("enqueue", b, 0); }
  void release(int b) { log.emplace_back("release", b, stream); }
  void release_all() { log.emplace_back("release_all", -1, stream); }
  void wait(int b) { log.emplace_back("wait", b, stream); }
  void synchronize_device() { log.emplace_back("synchronize", -1, 0); }
  // The calls BlockHandoff takes (bind_pipeline_calls).
  void start(bool refill_after_forward) {
    pipeline.emplace(*this, blocks, slots, refill_after_forward);
    pipeline->start();
  }
  void begin_forward(uintptr_t s, bool paused) {
    stream = s;
    started().begin_forward(paused);
  }
  void before(int b) { started().before(b); }
  void after_last() { started().after_last(); }
  void end_forward() { started().end_forward(); }
  BlockPipeline& started() {
    if (!pipeline) throw Error("block pipeline: not started");
    return *pipeline;
  }
  int blocks, slots;
  uintptr_t stream = 0;
  std::vector<std::tuple<std::string, int, uintptr_t>> log;  // (action, block or -1, compute stream or 0)
  std::optional<BlockPipeline> pipeline;
};

// The calls of a block streamer's hooks, for the CUDA hand-over and the recording one alike. before
// and after_last are registered as the blocks' hooks themselves and take, unread, what torch
// passes a hook.
template <class Handoff>
void bind_pipeline_calls(nb::class_<Handoff>& c) {
  c.def("start", &Handoff::start, nb::arg("refill_after_forward"))
      .def("begin_forward", &Handoff::begin_forward, nb::arg("stream"), nb::arg("paused"))
      .def("before", [](Handoff& h, int b, const nb::args&) { h.before(b); })
      .def("after_last", [](Handoff& h, const nb::args&) { h.after_last(); })
      .def("end_forward", &Handoff::end_forward);
}

#ifdef CODECLLM_HAVE_CUDA
// A GpuDecoder over the tensors of one block, keeping its file open.
struct Decoder {
  File file;
  std::unique_ptr<cuda::GpuDecoder> dec;
};

cudaStream_t as_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }
#endif

}  // namespace

NB_MODULE(_native, m) {
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const FormatError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const IoError& e) {
      PyErr_SetString(PyExc_OSError, e.what());
    } catch (const Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });

#ifdef CODECLLM_HAVE_CUDA
  m.attr("has_cuda") = true;
  m.attr("max_tensors_per_decoder") = cuda::kMaxTensorsPerLaunch;
#else
  m.attr("has_cuda") = false;
#endif

  m.attr("streaming_chunk_symbols") = codec::kStreamingChunkSymbols;
  m.def("compress", &compress, nb::arg("src"), nb::arg("dst"), nb::arg("mode") = "lossless", nb::arg("threads") = 0,
        nb::arg("chunk_symbols") = 0, nb::arg("one_table") = false, nb::arg("codec") = "rans",
        nb::arg("zstd_level") = codec::kDefaultZstdLevel, nb::arg("progress") = nb::none());

  // The engine's placement planner (engine/placement_plan.hpp), for placement="auto": layers as
  // (decoded, compressed, decoder table) bytes; returns (placement per layer, total VRAM, decode
  // slots, plan text).
  m.def(
      "plan_placement",
      [](const std::vector<std::tuple<uint64_t, uint64_t, uint64_t>>& layers, uint64_t fixed, uint64_t budget,
         int prefetch, int compressed_slots, uint64_t decoder_scratch) {
        engine::PlanRequest r;
        r.decoder_scratch_bytes = decoder_scratch;
        for (const auto& [decoded, compressed, tables] : layers) r.layers.push_back({decoded, compressed, tables});
        r.fixed_bytes = fixed;
        r.budget_bytes = budget;
        r.prefetch_depth = prefetch;
        r.compressed_slots = compressed_slots;
        const engine::PlacementPlan p = engine::plan_placement(r);
        std::vector<std::string> names;
        for (Placement l : p.layers) names.emplace_back(placement_name(l));
        return std::make_tuple(names, p.total_bytes, p.decode_slots, engine::describe_plan(p, r));
      },
      nb::arg("layers"), nb::arg("fixed_bytes"), nb::arg("budget_bytes"), nb::arg("prefetch") = 2,
      nb::arg("compressed_slots") = 2, nb::arg("decoder_scratch") = 0);

  // The engine's multi-device planner (engine/device_split.hpp), for device_map="auto": layers as
  // plan_placement takes them, one budget per device, the bytes the first device (embeddings),
  // the last (final norm, lm_head) and every device hold besides; placement "auto" or one for
  // every layer. Returns ([(first layer, end layer, placement per layer, total VRAM, decode
  // slots)], the plan as text); errors name the device and the numbers.
  m.def(
      "plan_devices",
      [](const std::vector<std::tuple<uint64_t, uint64_t, uint64_t>>& layers, const std::vector<uint64_t>& budgets,
         uint64_t first_device_bytes, uint64_t last_device_bytes, uint64_t every_device_bytes,
         const std::string& placement, int prefetch, int compressed_slots) {
        engine::DeviceSplitRequest r;
        for (const auto& [decoded, compressed, tables] : layers)
          r.model.layers.push_back({decoded, compressed, tables});
        r.model.prefetch_depth = prefetch;
        r.model.compressed_slots = compressed_slots;
        r.budgets = budgets;
        r.first_device_bytes = first_device_bytes;
        r.last_device_bytes = last_device_bytes;
        r.every_device_bytes = every_device_bytes;
        r.placement = parse_placement(placement);
        const std::vector<engine::DeviceShare> shares = engine::plan_devices(r);
        std::vector<std::tuple<size_t, size_t, std::vector<std::string>, uint64_t, int>> out;
        for (const engine::DeviceShare& d : shares) {
          std::vector<std::string> names;
          for (Placement l : d.plan.layers) names.emplace_back(placement_name(l));
          out.emplace_back(d.first_layer, d.end_layer, names, d.plan.total_bytes, d.plan.decode_slots);
        }
        return std::make_pair(out, engine::describe_devices(shares));
      },
      nb::arg("layers"), nb::arg("budgets"), nb::arg("first_device_bytes") = 0, nb::arg("last_device_bytes") = 0,
      nb::arg("every_device_bytes") = 0, nb::arg("placement") = "auto", nb::arg("prefetch") = 2,
      nb::arg("compressed_slots") = 2);

  nb::class_<PipelineTrace> trace(m, "BlockPipelineTrace");
  trace.def(nb::init<int, int>(), nb::arg("blocks"), nb::arg("slots"))
      .def("pending", [](PipelineTrace& t, int b) { return t.started().pending(b); })
      // The actions since the last call, oldest first.
      .def("take", [](PipelineTrace& t) { return std::exchange(t.log, {}); });
  bind_pipeline_calls(trace);

  m.def(
      "decompress",
      [](const std::string& file, const std::string& out_dir) {
        nb::gil_scoped_release nogil;
        model::decompress_container(file, out_dir);
      },
      nb::arg("file"), nb::arg("out_dir"));

  nb::class_<format::ContainerReader>(m, "File");  // NOLINT(bugprone-unused-raii): registers the type
  m.def("open_file", [](const std::string& path) { return std::make_shared<format::ContainerReader>(path); });
  m.def("file_path", [](const File& f) { return f->path(); });
  m.def("file_size", [](const File& f) { return f->file_size(); });
  m.def("file_mode", [](const File& f) { return f->index().mode; });
  m.def("file_source", [](const File& f) { return f->index().source; });
  m.def("tensors", [](const File& f) {
    nb::list out;
    for (const auto& r : f->index().tensors) out.append(tensor_info(r));
    return out;
  });
  m.def("blob_names", [](const File& f) {
    std::vector<std::string> names;
    for (const auto& b : f->index().blobs) names.push_back(b.name);
    return names;
  });
  m.def("blob", [](const File& f, const std::string& name) {
    if (!f->has_blob(name)) throw Error(f->path() + ": carries no '" + name + "'");
    const ByteSpan b = f->blob(name);
    return nb::bytes(reinterpret_cast<const char*>(b.data()), b.size());
  });
  // The CPU reference decoder: (decoded bytes, int8 row scales as float32 bytes or b"").
  m.def("decode_cpu", [](const File& f, const std::string& name) {
    const format::TensorRecord& r = record_of(f, name);
    codec::DecodedTensor d;
    {
      nb::gil_scoped_release nogil;
      d = codec::decode_tensor(
          r, [&](const format::PlaneRecord& p) { return f->payload(p); }, f->path());
    }
    return std::make_pair(nb::bytes(reinterpret_cast<const char*>(d.bytes.data()), d.bytes.size()),
                          nb::bytes(reinterpret_cast<const char*>(d.scales.data()), d.scales.size() * sizeof(float)));
  });

#ifdef CODECLLM_HAVE_CUDA
  nb::class_<Decoder>(m, "GpuDecoder")
      // int8_out: "bf16", "f16" (dequantized by the decoder) or "int8".
      .def(
          "__init__",
          [](Decoder* self, const File& f, const std::vector<std::string>& names, const std::string& int8_out,
             bool f32_as_bf16, bool external_scratch) {
            cuda::DecoderOptions o;
            o.external_scratch = external_scratch;
            o.int8_output = int8_out == "int8"  ? cuda::Int8Out::Int8
                            : int8_out == "f16" ? cuda::Int8Out::F16
                                                : cuda::Int8Out::Bf16;
            o.f32_as_bf16 = f32_as_bf16;
            new (self) Decoder{f, std::make_unique<cuda::GpuDecoder>(*f, names, o)};
          },
          nb::arg("file"), nb::arg("names"), nb::arg("int8_out") = "bf16", nb::arg("f32_as_bf16") = false,
          nb::arg("external_scratch") = false)
      .def_prop_ro("num_tensors", [](const Decoder& d) { return d.dec->num_tensors(); })
      .def("output_bytes", [](const Decoder& d, size_t i) { return d.dec->output_bytes(i); })
      .def_prop_ro("range_bytes", [](const Decoder& d) { return d.dec->range_bytes(); })
      .def_prop_ro("device_bytes", [](const Decoder& d) { return d.dec->device_bytes(); })
      // With external_scratch: the device bytes each decode needs passed in (zstd frames, int8
      // predictor residuals); decoders whose decodes never overlap share one buffer.
      .def_prop_ro("scratch_bytes", [](const Decoder& d) { return d.dec->scratch_bytes(); })
      // The compressed range as it lies in the mapped file, for a copy into pinned memory.
      .def("copy_range_to",
           [](const Decoder& d, uintptr_t host_ptr) {
             const ByteSpan r = d.dec->host_range();
             std::memcpy(reinterpret_cast<void*>(host_ptr), r.data(), r.size());
           })
      .def("upload_resident", [](Decoder& d, uintptr_t stream) { d.dec->upload_resident(as_stream(stream)); })
      .def_prop_ro("resident", [](const Decoder& d) { return reinterpret_cast<uintptr_t>(d.dec->resident()); })
      // Enqueues the decode of every tensor from a device copy of the range into outputs[i].
      .def(
          "decode",
          [](Decoder& d, uintptr_t comp, const std::vector<uintptr_t>& outputs, uintptr_t stream, uintptr_t scratch) {
            if (outputs.size() != d.dec->num_tensors()) throw Error("decode: one output per tensor expected");
            std::vector<void*> out;
            for (uintptr_t p : outputs) out.push_back(reinterpret_cast<void*>(p));
            d.dec->decode(reinterpret_cast<const uint8_t*>(comp), out.data(), as_stream(stream),
                          reinterpret_cast<uint8_t*>(scratch));
          },
          nb::arg("comp"), nb::arg("outputs"), nb::arg("stream"), nb::arg("scratch") = 0)
      .def(
          "decode_from_host",
          [](Decoder& d, const std::vector<uintptr_t>& outputs, uintptr_t stream, uintptr_t scratch) {
            if (outputs.size() != d.dec->num_tensors()) throw Error("decode: one output per tensor expected");
            std::vector<void*> out;
            for (uintptr_t p : outputs) out.push_back(reinterpret_cast<void*>(p));
            d.dec->decode_from_host(d.dec->host_range().data(), out.data(), as_stream(stream),
                                    reinterpret_cast<uint8_t*>(scratch));
          },
          nb::arg("outputs"), nb::arg("stream"), nb::arg("scratch") = 0)
      .def("check", [](Decoder& d, uintptr_t stream) { d.dec->check(as_stream(stream)); })
      // At most `blocks` resident decode blocks an SM (0: as many as fit), on the current device.
      .def("set_blocks_per_sm", [](Decoder& d, int blocks) { d.dec->set_blocks_per_sm(blocks); })
      .def("gemv_ready", [](const Decoder& d, size_t i) { return d.dec->gemv_ready(i); })
      // y = W_i x straight from the resident compressed weights (after upload_resident): x one BF16
      // row, 16-byte aligned; y its BF16 rows. Launched as a programmatic dependent of the stream's
      // previous kernel, as the C++ engine launches it; corrupt chunks show at the next check.
      .def("gemv", [](Decoder& d, size_t i, uintptr_t x, uintptr_t y, uintptr_t stream) {
        if (d.dec->resident() == nullptr) throw Error("gemv: the decoder holds no compressed weights in VRAM");
        d.dec->decode_gemv(d.dec->resident(), i, 1, reinterpret_cast<const void*>(x), false, reinterpret_cast<void*>(y),
                           cuda::GemvOut::Bf16, as_stream(stream), true);
      });
  nb::class_<python::BlockHandoff> handoff(m, "BlockHandoff");
  handoff.def(nb::init<int, int, int>(), nb::arg("slots"), nb::arg("streams"), nb::arg("stages"))
      .def(
          "add_block",
          [](python::BlockHandoff& h, Decoder& d, const std::vector<uintptr_t>& outputs, int slot, int stream,
             uintptr_t comp, uintptr_t pinned, size_t bytes, int stage) {
            std::vector<void*> out;
            for (uintptr_t p : outputs) out.push_back(reinterpret_cast<void*>(p));
            return h.add_block(d.dec.get(), std::move(out), slot, stream, reinterpret_cast<const void*>(comp),
                               reinterpret_cast<const void*>(pinned), bytes, stage);
          },
          nb::arg("decoder"), nb::arg("outputs"), nb::arg("slot"), nb::arg("stream"), nb::arg("comp"),
          nb::arg("pinned") = 0, nb::arg("bytes") = 0, nb::arg("stage") = -1,
          nb::keep_alive<1, 2>())  // the handoff's launch thread uses the decoder as long as it lives
      .def("set_scratch", [](python::BlockHandoff& h, int stream,
                             uintptr_t p) { h.set_scratch(stream, reinterpret_cast<uint8_t*>(p)); })
      .def("synchronize", &python::BlockHandoff::synchronize)
      .def("stream", [](const python::BlockHandoff& h, int i) { return reinterpret_cast<uintptr_t>(h.stream(i)); });
  bind_pipeline_calls(handoff);
  // The device's address of pinned host memory (the same number under unified addressing); a clear error for
  // memory that is not pinned, before any kernel reads it.
  m.def("host_device_pointer", [](uintptr_t host) {
    void* device = nullptr;
    const cudaError_t e = cudaHostGetDevicePointer(&device, reinterpret_cast<void*>(host), 0);
    if (e != cudaSuccess)
      throw Error(std::string("pinned host memory not mapped for the device: ") + cudaGetErrorString(e));
    return reinterpret_cast<uintptr_t>(device);
  });
  m.def(
      "gather_host_rows",
      [](uintptr_t table, uint64_t rows, uint64_t row_bytes, uintptr_t ids, uint64_t n, uintptr_t out, uintptr_t bad,
         uintptr_t stream) {
        cuda::gather_host_rows(reinterpret_cast<const void*>(table), rows, row_bytes,
                               reinterpret_cast<const int64_t*>(ids), n, reinterpret_cast<void*>(out),
                               reinterpret_cast<int*>(bad), as_stream(stream));
      },
      nb::arg("table"), nb::arg("rows"), nb::arg("row_bytes"), nb::arg("ids"), nb::arg("n"), nb::arg("out"),
      nb::arg("bad"), nb::arg("stream"));
#endif
}
