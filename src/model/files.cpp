#include "model/files.hpp"

#include <filesystem>
#include <system_error>

#include "format/mapped_file.hpp"

namespace codecllm::model {

std::string read_whole_file(const std::string& path) {
  const format::MappedFile file(path);
  if (file.size() == 0) return std::string();
  return std::string(reinterpret_cast<const char*>(file.data()), file.size());
}

bool is_regular_file(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

}  // namespace codecllm::model
