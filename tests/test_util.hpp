// Helpers shared by the unit tests: temporary directories and synthetic weights.
#pragma once

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "codec/int8_quant.hpp"
#include "codec/tensor_codec.hpp"
#include "codecllm/error.hpp"
#include "format/index.hpp"

namespace codecllm::test {

// The CPU reference decode of a tensor encoded in memory (its payloads not yet in a file).
inline codec::DecodedTensor decode(const codec::EncodedTensor& e) {
  return codec::decode_tensor(
      e.record,
      [&](const format::PlaneRecord& p) {
        for (size_t k = 0; k < e.record.planes.size(); ++k)
          if (&e.record.planes[k] == &p) return ByteSpan(e.payloads[k].data(), e.payloads[k].size());
        throw Error("no such plane");
      },
      "test");
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/codecllm-test-XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    if (p == nullptr) std::abort();
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The weight mode a test names, as `codecllm compress --mode` takes it: "int8" or "lossless".
inline format::TensorMode mode_named(const std::string& mode) {
  return mode == "int8" ? format::TensorMode::Int8 : format::TensorMode::Lossless;
}

inline bool file_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

inline std::vector<std::string> list_dir(const std::string& p) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(p.c_str())) {
    while (dirent* e = ::readdir(d))
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Trained-weight-like values: Gaussian with sigma, and a fraction of outliers 20x larger.
inline std::vector<float> gaussian(size_t n, double sigma, uint64_t seed, double outliers = 0.001) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, static_cast<float>(sigma));
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng) * (u(rng) < outliers ? 20.0f : 1.0f);
  return v;
}

// Gaussian values as 16-bit floats, converted by `to16` (bf16 or f16).
inline std::vector<uint8_t> gaussian_16(size_t n, double sigma, uint64_t seed, uint16_t (*to16)(float)) {
  std::vector<float> f = gaussian(n, sigma, seed);
  std::vector<uint8_t> out(2 * n);
  for (size_t i = 0; i < n; ++i) {
    const uint16_t h = to16(f[i]);
    std::memcpy(&out[2 * i], &h, 2);
  }
  return out;
}

inline std::vector<uint8_t> gaussian_bf16(size_t n, double sigma, uint64_t seed) {
  return gaussian_16(n, sigma, seed, codec::float_to_bf16);
}

inline std::vector<uint8_t> gaussian_f16(size_t n, double sigma, uint64_t seed) {
  return gaussian_16(n, sigma, seed, codec::float_to_f16);
}

inline std::vector<uint8_t> gaussian_f32(size_t n, double sigma, uint64_t seed) {
  std::vector<float> f = gaussian(n, sigma, seed);
  std::vector<uint8_t> out(4 * n);
  if (n > 0) std::memcpy(out.data(), f.data(), out.size());
  return out;
}

}  // namespace codecllm::test
