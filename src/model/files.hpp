// Small file-system helpers shared by the checkpoint readers.
#pragma once

#include <string>

namespace codecllm::model {

// Whole file as bytes in a string. Throws IoError naming the path.
std::string read_whole_file(const std::string& path);

// True when `path` names an existing regular file (or a link to one).
bool is_regular_file(const std::string& path);

}  // namespace codecllm::model
