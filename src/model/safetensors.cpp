// Safetensors parsing and writing. Every header field is checked before it is used to form
// a byte range, so a hostile file yields a FormatError and never an out-of-bounds read.
#include "model/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "codecllm/bytes.hpp"
#include "codecllm/error.hpp"
#include "format/output_file.hpp"

namespace codecllm::model {
namespace {

using nlohmann::json;

// Real headers nest three levels (root, tensor entry, shape); the cap stops a deeply
// nested header from costing gigabytes of parse tree before it is rejected.
constexpr int kMaxJsonDepth = 16;

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

// Names come from the file and may be megabytes long; messages show a prefix.
std::string shown(const std::string& name) {
  constexpr size_t kMaxShown = 120;
  return "'" + (name.size() <= kMaxShown ? name : name.substr(0, kMaxShown) + "...") + "'";
}

class Parser {
 public:
  Parser(ByteSpan file, const std::string& what) : file_(file), what_(what) {}

  SafetensorsFile parse() {
    if (file_.size() < 8) {
      fail("file is " + std::to_string(file_.size()) + " bytes, too short for the 8-byte safetensors header length");
    }
    const uint64_t header_len = load_le64(file_.data());
    if (header_len > kMaxSafetensorsHeader) {
      fail("header length " + std::to_string(header_len) + " exceeds the " + std::to_string(kMaxSafetensorsHeader) +
           "-byte limit");
    }
    if (header_len > file_.size() - 8) {
      fail("header length " + std::to_string(header_len) + " exceeds the " + std::to_string(file_.size() - 8) +
           " bytes after the length field");
    }
    SafetensorsFile out;
    out.data_start = 8 + header_len;
    data_ = file_.subspan(out.data_start, file_.size() - out.data_start);

    const json header = parse_json(file_.data() + 8, header_len);
    if (!header.is_object()) fail("header is not a JSON object");
    for (const auto& item : header.items()) {
      if (item.key() == "__metadata__") {
        out.metadata = parse_metadata(item.value());
      } else {
        out.tensors.push_back(parse_tensor(item.key(), item.value()));
      }
    }
    order_and_check_overlap(&out.tensors);
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& problem) const { throw FormatError(what_ + ": " + problem); }
  [[noreturn]] void fail_tensor(const std::string& name, const std::string& problem) const {
    fail("tensor " + shown(name) + ": " + problem);
  }

  json parse_json(const uint8_t* text, uint64_t size) const {
    const json::parser_callback_t limit_depth = [this](int depth, json::parse_event_t, json&) {
      if (depth > kMaxJsonDepth) {
        fail("header JSON nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
      }
      return true;
    };
    try {
      // The lexer rejects ill-formed UTF-8 in strings, which covers tensor names.
      return json::parse(text, text + size, limit_depth);
    } catch (const json::exception& e) {
      fail(std::string("header is not valid JSON: ") + e.what());
    }
  }

  std::map<std::string, std::string> parse_metadata(const json& value) const {
    if (!value.is_object()) fail("__metadata__ is not a JSON object");
    std::map<std::string, std::string> metadata;
    for (const auto& item : value.items()) {
      if (!item.value().is_string()) fail("__metadata__ value " + shown(item.key()) + " is not a string");
      metadata.emplace(item.key(), item.value().get<std::string>());
    }
    return metadata;
  }

  TensorInfo parse_tensor(const std::string& name, const json& entry) const {
    if (name.empty()) fail("a tensor has an empty name");
    if (!entry.is_object()) fail_tensor(name, "entry is not a JSON object");
    TensorInfo t;
    t.name = name;

    const auto dtype = entry.find("dtype");
    if (dtype == entry.end()) fail_tensor(name, "missing dtype");
    if (!dtype->is_string()) fail_tensor(name, "dtype is not a string");
    t.dtype_name = dtype->get<std::string>();
    t.dtype = dtype_from_name(t.dtype_name);

    const auto shape = entry.find("shape");
    if (shape == entry.end()) fail_tensor(name, "missing shape");
    if (!shape->is_array()) fail_tensor(name, "shape is not an array");
    // Product of the nonzero dimensions must fit, even when a zero makes the total 0,
    // so that later stride arithmetic on any subset of dimensions cannot overflow.
    uint64_t nonzero_product = 1;
    bool has_zero = false;
    for (const json& dim : *shape) {
      if (!dim.is_number_unsigned()) fail_tensor(name, "shape holds a non-integer or negative value");
      const uint64_t d = dim.get<uint64_t>();
      t.shape.push_back(d);
      if (d == 0) {
        has_zero = true;
      } else if (mul_overflows(nonzero_product, d, &nonzero_product)) {
        fail_tensor(name, "shape product overflows 64 bits");
      }
    }
    const uint64_t elements = has_zero ? 0 : nonzero_product;

    const auto offsets = entry.find("data_offsets");
    if (offsets == entry.end()) fail_tensor(name, "missing data_offsets");
    if (!offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
        !(*offsets)[1].is_number_unsigned()) {
      fail_tensor(name, "data_offsets is not an array of two non-negative integers");
    }
    const uint64_t begin = (*offsets)[0].get<uint64_t>();
    const uint64_t end = (*offsets)[1].get<uint64_t>();
    if (end < begin) {
      fail_tensor(name, "data_offsets end " + std::to_string(end) + " is before begin " + std::to_string(begin));
    }
    if (end > data_.size()) {
      fail_tensor(name, "data_offsets end " + std::to_string(end) + " is past the " + std::to_string(data_.size()) +
                            "-byte data region");
    }
    const size_t elem_size = dtype_size(t.dtype);
    if (elem_size != 0) {
      uint64_t bytes = 0;
      if (mul_overflows(elements, elem_size, &bytes)) {
        fail_tensor(name, "byte size of shape overflows 64 bits");
      }
      if (bytes != end - begin) {
        fail_tensor(name, "data_offsets span " + std::to_string(end - begin) + " bytes but " + t.dtype_name +
                              " shape needs " + std::to_string(bytes));
      }
    }
    t.data = data_.subspan(begin, end - begin);
    return t;
  }

  // Orders tensors by data position (the file's order; the JSON object is unordered) and
  // rejects overlapping byte ranges. Empty tensors overlap nothing.
  void order_and_check_overlap(std::vector<TensorInfo>* tensors) const {
    const uint8_t* base = data_.data();
    std::stable_sort(tensors->begin(), tensors->end(), [base](const TensorInfo& a, const TensorInfo& b) {
      return a.data.data() - base < b.data.data() - base;
    });
    const TensorInfo* furthest = nullptr;  // non-empty tensor reaching furthest so far
    for (const TensorInfo& t : *tensors) {
      if (t.data.empty()) continue;
      if (furthest != nullptr && furthest->data.end() > t.data.begin()) {
        fail("tensors " + shown(furthest->name) + " and " + shown(t.name) + " overlap");
      }
      if (furthest == nullptr || t.data.end() > furthest->data.end()) furthest = &t;
    }
  }

  ByteSpan file_;
  ByteSpan data_;
  const std::string& what_;
};

}  // namespace

SafetensorsFile parse_safetensors(ByteSpan file, const std::string& what) { return Parser(file, what).parse(); }

void write_safetensors(const std::string& path, const std::vector<TensorInfo>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const TensorInfo& t : tensors) {
    const std::string where = path + ": tensor '" + t.name + "': ";
    if (t.name.empty() || t.name == "__metadata__") throw Error(where + "name is not usable");
    if (!names.insert(t.name).second) throw Error(where + "name appears twice");
    const std::string dtype = t.dtype == DType::Unknown ? t.dtype_name : dtype_name(t.dtype);
    if (dtype.empty()) throw Error(where + "has neither a known dtype nor a dtype name");
    if (t.dtype != DType::Unknown) {
      uint64_t expected = dtype_size(t.dtype);
      for (uint64_t d : t.shape) {
        if (mul_overflows(expected, d, &expected)) throw Error(where + "shape overflows");
      }
      if (expected != t.data.size()) {
        throw Error(where + "holds " + std::to_string(t.data.size()) + " bytes, shape needs " +
                    std::to_string(expected));
      }
    }
    header[t.name] = {{"dtype", dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    throw Error(path + ": cannot encode the safetensors header: " + e.what());
  }
  // Pad with spaces (valid JSON whitespace) so the data region starts 8-byte aligned, as
  // the reference implementation does.
  text.append((8 - text.size() % 8) % 8, ' ');

  format::OutputFile out(path);
  uint8_t len[8];
  store_le64(len, text.size());
  out.write(len, sizeof(len));
  out.write(text.data(), text.size());
  for (const TensorInfo& t : tensors) out.write(t.data.data(), t.data.size());
  out.commit();
}

}  // namespace codecllm::model
