// Chooses the reader from what the path is: a directory is a Hugging Face checkpoint, a
// .bin file a llama2.c one.
#include "model/checkpoint.hpp"

#include <filesystem>
#include <system_error>

#include "codecllm/error.hpp"
#include "model/llama2c.hpp"

namespace codecllm::model {

std::unique_ptr<Checkpoint> open_checkpoint(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (!fs::exists(status)) {
    throw IoError(path + ": no such file or directory" + (ec ? " (" + ec.message() + ")" : ""));
  }
  if (fs::is_directory(status)) return open_hf_checkpoint(path);
  const std::string ext = fs::path(path).extension().string();
  if (fs::is_regular_file(status) && ext == ".bin") return open_llama2c_checkpoint(path);
  if (ext == ".safetensors") {
    throw FormatError(path +
                      ": open the Hugging Face directory holding this file (config.json "
                      "is needed), not the .safetensors file itself");
  }
  throw FormatError(path +
                    ": not a checkpoint: expected a Hugging Face directory or a "
                    "llama2.c .bin file");
}

}  // namespace codecllm::model
