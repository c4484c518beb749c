#include "format/index.hpp"

#include <cinttypes>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>

#include "codecllm/error.hpp"

namespace codecllm::format {

using nlohmann::json;

const char* plane_codec_name(PlaneCodec c) {
  switch (c) {
    case PlaneCodec::Rans:
      return "rans";
    case PlaneCodec::Zstd:
      return "zstd";
    case PlaneCodec::Exp4:
      return "exp4";
    case PlaneCodec::Raw:
      break;
  }
  return "raw";
}

const char* tensor_mode_name(TensorMode m) { return m == TensorMode::Int8 ? "int8" : "lossless"; }

const char* transform_name(Transform t) {
  switch (t) {
    case Transform::None:
      return "none";
    case Transform::FloatSplit:
      return "float_split";
    case Transform::BytePlanes:
      return "byte_planes";
    case Transform::Int8Rows:
      return "int8_rows";
  }
  return "none";
}

const char* predictor_name(Predictor p) { return p == Predictor::Left ? "left" : "none"; }

uint64_t TensorRecord::num_elements() const {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;  // validated against overflow when parsed
  return n;
}

const PlaneRecord* TensorRecord::plane(const std::string& role) const {
  for (const auto& p : planes)
    if (p.role == role) return &p;
  return nullptr;
}

const TensorRecord* Index::find_tensor(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const BlobRecord* Index::find_blob(const std::string& name) const {
  for (const auto& b : blobs)
    if (b.name == name) return &b;
  return nullptr;
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

bool parse_hex64(const std::string& s, uint64_t* out) {
  if (s.size() != 16) return false;
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else
      return false;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  *out = v;
  return true;
}

std::string index_to_json(const Index& index) {
  json j;
  j["format"] = "cllm";
  j["version"] = index.version;
  j["mode"] = index.mode;
  j["source"] = index.source;
  j["producer"] = index.producer;
  json blobs = json::array();
  for (const auto& b : index.blobs)
    blobs.push_back({{"name", b.name}, {"offset", b.offset}, {"size", b.size}, {"xxh3", hex64(b.xxh3)}});
  j["blobs"] = blobs;
  json tensors = json::array();
  for (const auto& t : index.tensors) {
    json planes = json::array();
    for (const auto& p : t.planes) {
      planes.push_back({{"role", p.role},
                        {"codec", plane_codec_name(p.codec)},
                        {"offset", p.offset},
                        {"size", p.size},
                        {"symbols", p.symbols},
                        {"xxh3", hex64(p.payload_xxh3)},
                        {"entropy_bits", p.entropy_bits}});
    }
    tensors.push_back({{"name", t.name},
                       {"shape", t.shape},
                       {"dtype", dtype_name(t.dtype)},
                       {"mode", tensor_mode_name(t.mode)},
                       {"transform", transform_name(t.transform)},
                       {"predictor", predictor_name(t.predictor)},
                       {"decoded_size", t.decoded_size},
                       {"decoded_xxh3", hex64(t.decoded_xxh3)},
                       {"planes", planes}});
  }
  j["tensors"] = tensors;
  // Names come from checkpoints: never let a bad byte make the writer throw.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {

// Field access that turns every type or range problem into a FormatError naming the file.
class Fields {
 public:
  Fields(const json& obj, std::string where) : obj_(obj), where_(std::move(where)) {
    if (!obj_.is_object()) fail("is not a JSON object");
  }
  [[noreturn]] void fail(const std::string& msg) const { throw FormatError(where_ + ": " + msg); }
  const json& get(const char* key) const {
    auto it = obj_.find(key);
    if (it == obj_.end()) fail(std::string("missing field '") + key + "'");
    return *it;
  }
  std::string str(const char* key) const {
    const json& v = get(key);
    if (!v.is_string()) fail(std::string("field '") + key + "' is not a string");
    return v.get<std::string>();
  }
  uint64_t u64(const char* key) const {
    const json& v = get(key);
    if (!v.is_number_unsigned()) fail(std::string("field '") + key + "' is not an unsigned integer");
    return v.get<uint64_t>();
  }
  double num(const char* key) const {
    const json& v = get(key);
    if (!v.is_number()) fail(std::string("field '") + key + "' is not a number");
    return v.get<double>();
  }
  uint64_t hex(const char* key) const {
    uint64_t out = 0;
    if (!parse_hex64(str(key), &out)) fail(std::string("field '") + key + "' is not 16 hex digits");
    return out;
  }
  const json& array(const char* key) const {
    const json& v = get(key);
    if (!v.is_array()) fail(std::string("field '") + key + "' is not an array");
    return v;
  }
  const std::string& where() const { return where_; }

 private:
  const json& obj_;
  std::string where_;
};

void check_range(const Fields& f, uint64_t offset, uint64_t size, uint64_t file_size) {
  if (offset > file_size || size > file_size - offset) {
    f.fail("payload [" + std::to_string(offset) + ", +" + std::to_string(size) + ") lies outside the file (" +
           std::to_string(file_size) + " bytes)");
  }
}

template <typename E, size_t N>
E parse_enum(const Fields& f, const char* key, const char* (*name)(E), const E (&values)[N]) {
  std::string s = f.str(key);
  for (E v : values)
    if (s == name(v)) return v;
  f.fail(std::string("unknown ") + key + " '" + s + "'");
}

PlaneRecord parse_plane(const json& j, const std::string& where, uint64_t file_size) {
  Fields f(j, where);
  PlaneRecord p;
  p.role = f.str("role");
  p.codec = parse_enum(f, "codec", plane_codec_name, {PlaneCodec::Raw, PlaneCodec::Rans, PlaneCodec::Zstd, PlaneCodec::Exp4});
  p.offset = f.u64("offset");
  p.size = f.u64("size");
  p.symbols = f.u64("symbols");
  p.payload_xxh3 = f.hex("xxh3");
  p.entropy_bits = f.num("entropy_bits");
  check_range(f, p.offset, p.size, file_size);
  if (p.codec == PlaneCodec::Raw && p.size != p.symbols) f.fail("raw plane size differs from its symbol count");
  return p;
}

TensorRecord parse_tensor(const json& j, const std::string& where, uint64_t file_size) {
  Fields f(j, where);
  TensorRecord t;
  t.name = f.str("name");
  Fields named(j, where + " tensor '" + t.name + "'");
  uint64_t elements = 1;
  for (const json& d : named.array("shape")) {
    if (!d.is_number_unsigned()) named.fail("shape holds a non-integer");
    uint64_t v = d.get<uint64_t>();
    if (v != 0 && elements > std::numeric_limits<uint64_t>::max() / v) named.fail("shape overflows");
    elements *= v;
    t.shape.push_back(v);
  }
  t.dtype = dtype_from_name(named.str("dtype"));
  t.mode = parse_enum(named, "mode", tensor_mode_name, {TensorMode::Lossless, TensorMode::Int8});
  t.transform = parse_enum(named, "transform", transform_name,
                           {Transform::None, Transform::FloatSplit, Transform::BytePlanes, Transform::Int8Rows});
  t.predictor = parse_enum(named, "predictor", predictor_name, {Predictor::None, Predictor::Left});
  t.decoded_size = named.u64("decoded_size");
  t.decoded_xxh3 = named.hex("decoded_xxh3");
  const json& planes = named.array("planes");
  for (size_t i = 0; i < planes.size(); ++i)
    t.planes.push_back(parse_plane(planes[i], named.where() + " plane " + std::to_string(i), file_size));
  // Structural consistency that decoders rely on; the codec checks the per-transform rules.
  size_t width = dtype_size(t.dtype);
  if (t.mode == TensorMode::Int8) {
    if (t.decoded_size != elements) named.fail("int8 decoded size differs from the element count");
  } else if (width != 0 && elements > std::numeric_limits<uint64_t>::max() / width) {
    named.fail("byte size overflows");
  } else if (width != 0 && t.decoded_size != elements * width) {
    named.fail("decoded size differs from shape x dtype size");
  }
  return t;
}

}  // namespace

bool is_plain_file_name(const std::string& name) {
  if (name.empty() || name.size() > 255 || name[0] == '.') return false;
  for (char c : name) {
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Index index_from_json(const std::string& text, uint64_t file_size, const std::string& what) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw FormatError(what + ": index is not valid JSON (or not UTF-8)");
  Fields f(j, what + ": index");
  if (f.str("format") != "cllm") f.fail("format is not 'cllm'");
  Index index;
  uint64_t version = f.u64("version");
  if (version != 1) f.fail("unsupported index version " + std::to_string(version));
  index.version = static_cast<uint32_t>(version);
  index.mode = f.str("mode");
  index.source = f.str("source");
  index.producer = f.str("producer");
  const json& blobs = f.array("blobs");
  for (size_t i = 0; i < blobs.size(); ++i) {
    Fields b(blobs[i], what + ": blob " + std::to_string(i));
    BlobRecord r{b.str("name"), b.u64("offset"), b.u64("size"), b.hex("xxh3")};
    if (!is_plain_file_name(r.name)) b.fail("blob name '" + r.name + "' is not a plain file name");
    check_range(b, r.offset, r.size, file_size);
    index.blobs.push_back(r);
  }
  const json& tensors = f.array("tensors");
  for (size_t i = 0; i < tensors.size(); ++i)
    index.tensors.push_back(parse_tensor(tensors[i], what + ": tensor " + std::to_string(i), file_size));
  return index;
}

}  // namespace codecllm::format
