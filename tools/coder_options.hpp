// The entropy-coder options that compress and synth share.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "codec/tensor_codec.hpp"

namespace codecllm::tools {

struct CoderArgs {
  std::string codec = "rans";
  int zstd_level = codec::kDefaultZstdLevel;
  uint32_t zstd_chunk = codec::kDefaultZstdChunkBytes;
};

inline void add_coder_options(CLI::App& app, const std::shared_ptr<CoderArgs>& a) {
  app.add_option("--codec", a->codec,
                 "Coder of coded planes: rans (the project's, smallest files, fastest GPU decode), exp4 (BF16 "
                 "exponents as 4-bit codes, 12 bits a weight, multiplied on the GPU without a decode pass; meant "
                 "for speed, slower than rans so far: docs/BENCHMARKS.md) or zstd (standard Zstd frames; the GPU "
                 "decodes them with nvCOMP where the build found it)")
      ->check(CLI::IsMember({"rans", "exp4", "zstd"}));
  app.add_option("--zstd-level", a->zstd_level, "zstd: compression level")->check(CLI::Range(-7, 22));
  app.add_option("--zstd-chunk-bytes", a->zstd_chunk, "zstd: decoded bytes per frame (nvCOMP recommends 64 KiB)")
      ->check(CLI::Range(uint32_t{4096}, codec::kMaxZstdChunkBytes));
}

inline void apply_coder_options(const CoderArgs& a, codec::EncodeOptions& o) {
  o.coder = codec::plane_coder_named(a.codec);
  o.zstd.level = a.zstd_level;
  o.zstd.chunk_bytes = a.zstd_chunk;
}

}  // namespace codecllm::tools
