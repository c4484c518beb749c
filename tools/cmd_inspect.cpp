#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "codec/rans.hpp"
#include "commands.hpp"
#include "format/container.hpp"
#include "table.hpp"

namespace codecllm::tools {

namespace {

std::string shape_text(const std::vector<uint64_t>& shape) {
  std::ostringstream os;
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? "x" : "") << shape[i];
  return shape.empty() ? "scalar" : os.str();
}

// role:codec per plane; "rans+classes" for a rANS plane with class tables (RNS2).
std::string planes_text(const format::ContainerReader& r, const format::TensorRecord& t) {
  std::string s;
  for (const auto& p : t.planes) {
    if (!s.empty()) s += " ";
    s += p.role + ":" + format::plane_codec_name(p.codec);
    if (p.codec == format::PlaneCodec::Rans && codec::rans_is_class_plane(r.payload(p, /*verify=*/false)))
      s += "+classes";
  }
  return s;
}

}  // namespace

Command add_inspect(CLI::App& app) {
  struct Args {
    std::string file;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  app.add_option("FILE", a->file, ".cllm file")->required()->check(CLI::ExistingFile);
  app.add_flag("--json", a->json, "Print the whole index as JSON");
  return [a] {
    format::ContainerReader r(a->file);
    const format::Index& idx = r.index();
    if (a->json) {
      nlohmann::json j = nlohmann::json::parse(format::index_to_json(idx));
      j["file_bytes"] = r.file_size();
      std::cout << j.dump(2) << '\n';
      return 0;
    }
    uint64_t source = 0, stored = 0, elements = 0;
    Table t({"tensor", "shape", "dtype", "mode", "planes", "stored", "bits/w"});
    for (const auto& tr : idx.tensors) {
      uint64_t bytes = 0;
      for (const auto& p : tr.planes) bytes += p.size;
      uint64_t n = tr.num_elements();
      source += tr.mode == format::TensorMode::Int8 ? n * dtype_size(tr.dtype) : tr.decoded_size;
      stored += bytes;
      elements += n;
      std::string mode = format::tensor_mode_name(tr.mode);
      if (tr.predictor == format::Predictor::Left) mode += "+left";
      t.add({tr.name, shape_text(tr.shape), dtype_name(tr.dtype), mode, planes_text(r, tr), human_bytes(double(bytes)),
             n ? fixed(8.0 * double(bytes) / double(n), 3) : "-"});
    }
    std::cout << a->file << ": .cllm v" << idx.version << ", " << human_bytes(double(r.file_size())) << ", mode "
              << idx.mode << ", " << idx.tensors.size() << " tensors, from " << idx.source << " (" << idx.producer
              << ")\n";
    std::cout << "carried files:";
    for (const auto& b : idx.blobs) std::cout << " " << b.name << " (" << human_bytes(double(b.size)) << ")";
    std::cout << "\n\n";
    t.print(std::cout);
    std::cout << "\nweights: " << elements << ", source " << human_bytes(double(source)) << ", stored "
              << human_bytes(double(stored)) << " ("
              << (elements ? fixed(8.0 * double(stored) / double(elements), 3) : "-") << " bits/weight)\n";
    return 0;
  };
}

}  // namespace codecllm::tools
