// Hugging Face checkpoint directories: config.json plus safetensors weights, either one
// file or shards listed by model.safetensors.index.json. Tensors are zero-copy views into
// memory maps the checkpoint keeps open.
#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "codecllm/error.hpp"
#include "format/mapped_file.hpp"
#include "model/checkpoint.hpp"
#include "model/files.hpp"
#include "model/safetensors.hpp"

namespace codecllm::model {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Files carried along unchanged when present; order is the order of extra_files().
const char* const kExtraFiles[] = {"tokenizer.json",        "tokenizer.model",        "tokenizer.bin",
                                   "tokenizer_config.json", "generation_config.json", "special_tokens_map.json"};

std::string join(const fs::path& dir, const std::string& name) { return (dir / name).string(); }

json parse_json_file(const std::string& path) {
  const std::string text = read_whole_file(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw FormatError(path + ": not valid JSON: " + e.what());
  }
}

// A shard name from an index must stay inside the checkpoint directory.
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

class HfCheckpoint : public Checkpoint {
 public:
  explicit HfCheckpoint(const std::string& dir) : dir_(dir), source_("hf:" + dir) {
    read_config();
    read_weights();
    for (const char* name : kExtraFiles) {
      const std::string path = join(dir_, name);
      if (is_regular_file(path)) extra_files_.emplace_back(name, read_whole_file(path));
    }
  }

  const std::vector<TensorInfo>& tensors() const override { return tensors_; }
  const std::string& config_json() const override { return config_json_; }
  const std::vector<std::pair<std::string, std::string>>& extra_files() const override { return extra_files_; }
  const std::string& source() const override { return source_; }

 private:
  void read_config() {
    const std::string path = join(dir_, "config.json");
    if (!is_regular_file(path)) {
      throw FormatError(dir_.string() + ": no config.json, so not a Hugging Face checkpoint directory");
    }
    config_json_ = read_whole_file(path);
    try {
      if (!json::parse(config_json_).is_object()) {
        throw FormatError(path + ": not a JSON object");
      }
    } catch (const json::exception& e) {
      throw FormatError(path + ": not valid JSON: " + e.what());
    }
  }

  void read_weights() {
    const std::string single = join(dir_, "model.safetensors");
    const std::string index = join(dir_, "model.safetensors.index.json");
    if (is_regular_file(single)) {
      add_file(single);
    } else if (is_regular_file(index)) {
      read_sharded(index);
    } else {
      add_file(find_lone_safetensors());
    }
  }

  // Shards are read in name order (model-00001-of-000NN first); every weight_map entry must
  // be found in the shard it names, so a stale or truncated index is caught here.
  void read_sharded(const std::string& index_path) {
    const json index = parse_json_file(index_path);
    const auto weight_map = index.is_object() ? index.find("weight_map") : index.end();
    if (weight_map == index.end() || !weight_map->is_object()) {
      throw FormatError(index_path + ": no weight_map object");
    }
    std::map<std::string, std::string> shard_of;
    std::set<std::string> shards;
    for (const auto& item : weight_map->items()) {
      if (!item.value().is_string() || !is_plain_file_name(item.value().get<std::string>())) {
        throw FormatError(index_path + ": weight_map entry '" + item.key() + "' does not name a file in the directory");
      }
      shard_of.emplace(item.key(), item.value().get<std::string>());
      shards.insert(item.value().get<std::string>());
    }
    if (shards.empty()) throw FormatError(index_path + ": weight_map is empty");
    for (const std::string& shard : shards) {
      if (!is_regular_file(join(dir_, shard))) {
        throw FormatError(index_path + ": shard '" + shard + "' is missing from " + dir_.string());
      }
    }
    std::map<std::string, std::string> found;  // tensor name -> shard holding it
    for (const std::string& shard : shards) {
      const size_t first = tensors_.size();
      add_file(join(dir_, shard));
      for (size_t i = first; i < tensors_.size(); ++i) found.emplace(tensors_[i].name, shard);
    }
    for (const auto& [name, shard] : shard_of) {
      const auto it = found.find(name);
      if (it == found.end() || it->second != shard) {
        throw FormatError(index_path + ": tensor '" + name + "' is not in shard '" + shard + "'");
      }
    }
  }

  // Some repositories hold one safetensors file under another name (e.g. a fine-tune).
  std::string find_lone_safetensors() const {
    std::vector<std::string> candidates;
    std::error_code ec;
    for (const fs::directory_entry& e : fs::directory_iterator(dir_, ec)) {
      if (e.path().extension() == ".safetensors" && is_regular_file(e.path().string())) {
        candidates.push_back(e.path().filename().string());
      }
    }
    if (ec) throw IoError(dir_.string() + ": cannot list directory: " + ec.message());
    if (candidates.size() == 1) return join(dir_, candidates[0]);
    if (candidates.empty()) {
      throw FormatError(dir_.string() +
                        ": no model.safetensors, model.safetensors.index.json or other "
                        ".safetensors file");
    }
    std::sort(candidates.begin(), candidates.end());
    std::string list;
    for (const std::string& c : candidates) list += (list.empty() ? "" : ", ") + c;
    throw FormatError(dir_.string() + ": several .safetensors files (" + list +
                      ") and no model.safetensors.index.json to say which to use");
  }

  void add_file(const std::string& path) {
    maps_.push_back(std::make_unique<format::MappedFile>(path));
    SafetensorsFile file = parse_safetensors(maps_.back()->bytes(), path);
    for (TensorInfo& t : file.tensors) {
      if (!names_.insert(t.name).second) {
        throw FormatError(path + ": tensor '" + t.name + "' also appears in an earlier shard");
      }
      tensors_.push_back(std::move(t));
    }
  }

  fs::path dir_;
  std::string source_;
  std::string config_json_;
  std::vector<std::unique_ptr<format::MappedFile>> maps_;  // own the bytes tensors_ point at
  std::vector<TensorInfo> tensors_;
  std::set<std::string> names_;
  std::vector<std::pair<std::string, std::string>> extra_files_;
};

}  // namespace

std::unique_ptr<Checkpoint> open_hf_checkpoint(const std::string& dir) { return std::make_unique<HfCheckpoint>(dir); }

}  // namespace codecllm::model
