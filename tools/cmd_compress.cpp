#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "codec/parallel_for.hpp"
#include "codecllm/error.hpp"
#include "coder_options.hpp"
#include "commands.hpp"
#include "model/compress.hpp"
#include "progress.hpp"
#include "table.hpp"

namespace codecllm::tools {

namespace {

struct Group {
  size_t tensors = 0, int8 = 0;
  uint64_t elements = 0, source = 0, stored = 0, coded = 0;
  double entropy = 0, seconds = 0;
  void add(const model::TensorStats& s) {
    ++tensors;
    int8 += s.int8 ? 1 : 0;
    elements += s.elements;
    source += s.source_bytes;
    stored += s.stored_bytes;
    coded += s.coded_bytes;
    entropy += s.entropy_bytes;
    seconds += s.seconds;
  }
  std::vector<std::string> row(const std::string& name) const {
    auto pct = [](double v) { return fixed(100.0 * v, 2) + "%"; };
    return {name,
            std::to_string(tensors),
            int8 == 0         ? "lossless"
            : int8 == tensors ? "int8"
                              : "mixed",
            human_bytes(double(source)),
            human_bytes(double(stored)),
            source ? pct(double(stored) / double(source)) : "-",
            elements ? fixed(8.0 * double(stored) / double(elements), 3) : "-",
            entropy > 0 ? fixed(8.0 * entropy / double(elements), 3) : "-",
            entropy > 0 ? (double(coded) >= entropy ? "+" : "") + pct(double(coded) / entropy - 1.0) : "-",
            seconds > 0 ? fixed(double(source) / seconds / 1e6, 0) : "-"};
  }
  nlohmann::json json() const {
    return {{"tensors", tensors},
            {"int8_tensors", int8},
            {"elements", elements},
            {"source_bytes", source},
            {"stored_bytes", stored},
            {"coded_bytes", coded},
            {"entropy_bound_bytes", entropy},
            {"encode_seconds", seconds}};
  }
};

}  // namespace

Command add_compress(CLI::App& app) {
  struct Args {
    std::string src, out, mode = "lossless", predictor = "auto";
    unsigned threads = 0;
    uint32_t chunk_symbols = codec::kDefaultChunkSymbols;
    bool quantize_embeddings = false, class_tables = true, json = false, quiet = false;
  };
  auto a = std::make_shared<Args>();
  auto coder = std::make_shared<CoderArgs>();
  app.add_option("SRC", a->src, "Hugging Face directory or llama2.c .bin")->required();
  app.add_option("-o,--output", a->out, "Output .cllm file")->required();
  app.add_option("--mode", a->mode, "lossless (bit-exact) or int8 (per-row symmetric INT8)")
      ->check(CLI::IsMember({"lossless", "int8"}));
  app.add_option("--threads", a->threads, "Encoder threads (default: all cores)");
  app.add_option("--chunk-symbols", a->chunk_symbols, "Symbols per rANS chunk (multiple of 32)")
      ->check(CLI::Range(32u, 1u << 24));
  add_coder_options(app, coder);
  app.add_option("--predictor", a->predictor, "int8 LEFT delta predictor: auto (where it pays), on, off")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  app.add_flag("--quantize-embeddings", a->quantize_embeddings, "int8 mode: quantize token embeddings too");
  app.add_flag("--class-tables,!--one-table", a->class_tables,
               "BF16 embeddings and lm_head: code exponents with per-row or per-column class tables where that "
               "saves >= 0.5% (default; --one-table: one table each, which the GPU decodes ~8x faster at load)");
  app.add_flag("--json", a->json, "Print the summary as JSON on stdout instead of a table");
  app.add_flag("-q,--quiet", a->quiet, "No progress output");
  return [a, coder] {
    model::CompressOptions o;
    o.threads = a->threads;
    o.encode.mode = a->mode == "int8" ? format::TensorMode::Int8 : format::TensorMode::Lossless;
    o.encode.quantize_embeddings = a->quantize_embeddings;
    o.encode.class_tables = a->class_tables;
    o.encode.predictor = a->predictor == "on"    ? codec::PredictorChoice::On
                         : a->predictor == "off" ? codec::PredictorChoice::Off
                                                 : codec::PredictorChoice::Auto;
    if (a->chunk_symbols % codec::kRansLanes != 0) throw codecllm::Error("--chunk-symbols must be a multiple of 32");
    o.encode.rans.chunk_symbols = a->chunk_symbols;
    apply_coder_options(*coder, o.encode);
    model::CompressResult r;
    {
      CompressProgress progress(a->quiet);
      r = model::compress_checkpoint(a->src, a->out, o, progress.fn());
    }

    std::map<std::string, Group> groups;
    Group total;
    size_t tried = 0, used = 0;
    for (const auto& s : r.tensors) {
      groups[model::tensor_group(s.name)].add(s);
      total.add(s);
      tried += s.predictor_tried;
      used += s.predictor_used;
    }
    const double mbps = double(total.source) / r.seconds / 1e6;
    if (a->json) {
      nlohmann::json j{{"output", a->out},
                       {"mode", a->mode},
                       {"file_bytes", r.file_bytes},
                       {"wall_seconds", r.seconds},
                       {"threads", resolve_threads(a->threads)},
                       {"predictor_tried", tried},
                       {"predictor_used", used},
                       {"total", total.json()}};
      for (const auto& [name, g] : groups) j["groups"][name] = g.json();
      std::cout << j.dump(2) << '\n';
      return 0;
    }
    Table t({"group", "n", "mode", "source", "stored", "ratio", "bits/w", "bound b/w", "vs bound", "MB/s/core"});
    for (const auto& [name, g] : groups) t.add(g.row(name));
    t.separator();
    t.add(total.row("total"));
    t.print(std::cout);
    std::cout << "bound b/w: order-0 entropy of the entropy-coded planes per weight; vs bound: their coded size"
                 " (tables and chunk index included) against it (below it with class tables, which code by context)\n";
    if (tried > 0) std::cout << "int8 LEFT predictor: tried on " << tried << " tensors, kept on " << used << "\n";
    std::cout << "wrote " << a->out << ": " << human_bytes(double(r.file_bytes)) << " in " << fixed(r.seconds, 2)
              << " s (" << fixed(mbps, 0) << " MB/s with " << resolve_threads(a->threads) << " threads)\n";
    return 0;
  };
}

}  // namespace codecllm::tools
