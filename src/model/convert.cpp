#include "model/convert.hpp"

#include <filesystem>
#include <system_error>

#include "codecllm/error.hpp"
#include "format/output_file.hpp"
#include "model/llama2c.hpp"
#include "model/safetensors.hpp"

namespace codecllm::model {
namespace {

void write_text(const std::string& path, const std::string& text) {
  format::OutputFile out(path);
  out.write(text.data(), text.size());
  out.commit();
}

}  // namespace

void convert_llama2c_to_hf(const std::string& bin_path, const std::string& out_dir) {
  namespace fs = std::filesystem;
  const std::unique_ptr<Checkpoint> ckpt = open_llama2c_checkpoint(bin_path);
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) throw IoError(out_dir + ": cannot create directory: " + ec.message());
  const fs::path dir(out_dir);
  // Weights first and config.json last: a directory with a config.json is then complete.
  write_safetensors((dir / "model.safetensors").string(), ckpt->tensors(), {{"format", "pt"}});
  for (const auto& [name, bytes] : ckpt->extra_files()) write_text((dir / name).string(), bytes);
  write_text((dir / "config.json").string(), ckpt->config_json());
}

}  // namespace codecllm::model
