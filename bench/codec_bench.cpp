// CPU codec benchmark: coded size against the order-0 entropy bound, bits per weight, and
// encoder / decoder throughput (one core, then all cores), on the real models and on a large
// synthetic BF16 tensor. Reference figure measured in the same run: memcpy of the same bytes.
//
//   codec_bench [model paths...]     (default: the models in ../shared/models)
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "codec/parallel_for.hpp"
#include "codec/tensor_codec.hpp"
#include "model/checkpoint.hpp"
#include "model/synthetic.hpp"

using namespace codecllm;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct Totals {
  uint64_t elements = 0, source = 0, stored = 0, coded = 0;
  double entropy = 0, worst_overhead = 0, encode_s = 0, decode_s = 0;
  std::string worst;
};

// Encodes and decodes every tensor on one thread; checks the decode is exact.
Totals run_one_thread(const model::Checkpoint& ckpt, const codec::EncodeOptions& o) {
  Totals t;
  for (const auto& ti : ckpt.tensors()) {
    double t0 = now();
    codec::EncodedTensor e = codec::encode_tensor(ti.name, ti.dtype, ti.shape, ti.data, o);
    double t1 = now();
    codec::DecodedTensor d = codec::decode_tensor(
        e.record,
        [&](const format::PlaneRecord& p) {
          const size_t k = static_cast<size_t>(&p - e.record.planes.data());
          return ByteSpan(e.payloads[k].data(), e.payloads[k].size());
        },
        "bench");
    double t2 = now();
    if (e.record.mode == format::TensorMode::Lossless &&
        std::memcmp(d.bytes.data(), ti.data.data(), ti.data.size()) != 0) {
      std::fprintf(stderr, "MISMATCH in %s\n", ti.name.c_str());
      std::exit(1);
    }
    t.encode_s += t1 - t0;
    t.decode_s += t2 - t1;
    t.elements += e.record.num_elements();
    t.source += ti.data.size();
    uint64_t coded = 0;
    double entropy = 0;
    for (const auto& p : e.record.planes) {
      t.stored += p.size;
      if (p.codec == format::PlaneCodec::Rans) {
        coded += p.size;
        entropy += p.entropy_bits * double(p.symbols) / 8.0;
      }
    }
    t.coded += coded;
    t.entropy += entropy;
    if (e.record.num_elements() >= 1000000 && entropy > 0 && double(coded) / entropy - 1 > t.worst_overhead) {
      t.worst_overhead = double(coded) / entropy - 1;
      t.worst = ti.name;
    }
  }
  return t;
}

double encode_all_threads(const model::Checkpoint& ckpt, const codec::EncodeOptions& o, unsigned threads) {
  const auto& ts = ckpt.tensors();
  double t0 = now();
  parallel_for(ts.size(), threads,
               [&](size_t i) { codec::encode_tensor(ts[i].name, ts[i].dtype, ts[i].shape, ts[i].data, o); });
  return now() - t0;
}

double memcpy_gbps(uint64_t bytes) {
  std::vector<uint8_t> a(bytes, 1), b(bytes);
  double best = 1e9;
  for (int i = 0; i < 5; ++i) {
    double t0 = now();
    std::memcpy(b.data(), a.data(), bytes);
    best = std::min(best, now() - t0);
  }
  return double(bytes) / best / 1e9;
}

void report(const std::string& name, const model::Checkpoint& ckpt) {
  // Lossless with one table per plane (--one-table), int8, and lossless with class tables for
  // embeddings and lm_head (the default).
  for (int run = 0; run < 3; ++run) {
    const auto mode = run == 1 ? format::TensorMode::Int8 : format::TensorMode::Lossless;
    codec::EncodeOptions o;
    o.mode = mode;
    o.class_tables = run == 2;
    Totals t = run_one_thread(ckpt, o);
    const unsigned threads = resolve_threads(0);
    const double all = encode_all_threads(ckpt, o, threads);
    std::printf(
        "%-28s %-8s %6.3f b/w  stored %6.2f%%  coded/bound %+.3f%% (worst >=1M tensor %+.3f%% %s)\n"
        "%-28s %-8s encode %6.0f MB/s/core, %6.0f MB/s on %u threads (x%.2f); decode %6.0f MB/s/core\n",
        name.c_str(),
        run == 1   ? "int8"
        : run == 2 ? "classes"
                   : "lossless",
        8.0 * double(t.stored) / double(t.elements), 100.0 * double(t.stored) / double(t.source),
        100.0 * (double(t.coded) / t.entropy - 1), 100.0 * t.worst_overhead, t.worst.c_str(), "", "",
        double(t.source) / t.encode_s / 1e6, double(t.source) / all / 1e6, threads, t.encode_s / all,
        double(t.source) / t.decode_s / 1e6);
  }
}

bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) paths.emplace_back(argv[i]);
  if (paths.empty()) {
    for (const char* m : {"/stories260K/stories260K.bin", "/pycode24M"})
      if (exists(std::string(CODECLLM_SHARED_MODELS) + m)) paths.push_back(std::string(CODECLLM_SHARED_MODELS) + m);
  }
  std::printf("reference: memcpy %.1f GB/s (one core, 64 MiB)\n", memcpy_gbps(64u << 20));
  for (const auto& p : paths) report(p.substr(p.find_last_of('/') + 1), *model::open_checkpoint(p));
  model::MemoryCheckpoint synth("synthetic", "{}");
  synth.add("w", DType::BF16, {4096, 4096}, model::random_bf16(4096ull * 4096, 0.02, 1));
  report("synthetic 4096x4096 BF16", synth);
  return 0;
}
