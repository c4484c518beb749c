// tokenizer.json -> HfConfig. Every component type outside the Llama-family subset
// (BPE model; Metaspace, ByteLevel and known Split pre-tokenizers; Prepend/Replace/NFC
// normalizers; the matching decoders) is rejected with a FormatError naming it, so that an
// unsupported tokenizer fails at load time instead of encoding text differently.
#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <utility>

#include "codecllm/error.hpp"
#include "model/hf_bpe.hpp"
#include "model/tokenizer.hpp"

namespace codecllm::model {
namespace {

using nlohmann::json;

class Reader {
 public:
  explicit Reader(const std::string& what) : what_(what) {}

  [[noreturn]] void fail(const std::string& problem) const { throw FormatError(what_ + ": " + problem); }

  std::string type_of(const json& j, const char* component) const {
    if (!j.is_object() || !j.contains("type")) fail(std::string(component) + " has no type");
    return j.at("type").get<std::string>();
  }

  // A Replace pattern: only literal strings are supported.
  std::string literal(const json& pattern) const {
    if (!pattern.contains("String")) fail("only String patterns are supported in Replace");
    return pattern.at("String").get<std::string>();
  }

  void normalizer(const json& j, std::vector<HfNormalizerStep>* out) const {
    if (j.is_null()) return;
    const std::string type = type_of(j, "normalizer");
    if (type == "Sequence") {
      for (const json& n : j.at("normalizers")) normalizer(n, out);
    } else if (type == "Prepend") {
      out->push_back({HfNormalizerStep::Kind::Prepend, "", j.at("prepend").get<std::string>()});
    } else if (type == "Replace") {
      out->push_back({HfNormalizerStep::Kind::Replace, literal(j.at("pattern")), j.at("content").get<std::string>()});
    } else if (type != "NFC") {
      fail("unsupported normalizer " + type);
    }
  }

  void pre_tokenizer(const json& j, std::vector<HfPreTokenizerStep>* out) const {
    if (j.is_null()) return;
    const std::string type = type_of(j, "pre_tokenizer");
    HfPreTokenizerStep step;
    if (type == "Sequence") {
      for (const json& p : j.at("pretokenizers")) pre_tokenizer(p, out);
      return;
    }
    if (type == "Metaspace") {
      step.kind = HfPreTokenizerStep::Kind::Metaspace;
      step.replacement = j.at("replacement").get<std::string>();
      step.prepend = prepend_scheme(j);
      step.split = j.value("split", true);
    } else if (type == "ByteLevel") {
      step.kind = HfPreTokenizerStep::Kind::ByteLevel;
      step.add_prefix_space = j.value("add_prefix_space", true);
      step.use_regex = j.value("use_regex", true);
    } else if (type == "Split") {
      step.kind = HfPreTokenizerStep::Kind::Split;
      const json& pattern = j.at("pattern");
      if (!pattern.contains("Regex") || !split_pattern_of(pattern.at("Regex").get<std::string>(), &step.pattern)) {
        fail("unsupported Split pattern " + pattern.dump());
      }
      if (j.at("behavior").get<std::string>() != "Isolated" || j.value("invert", false)) {
        fail("unsupported Split behavior (only Isolated, not inverted)");
      }
    } else {
      fail("unsupported pre_tokenizer " + type);
    }
    out->push_back(step);
  }

  // Metaspace's "prepend_scheme", or the older boolean "add_prefix_space".
  HfPreTokenizerStep::Prepend prepend_scheme(const json& j) const {
    using Prepend = HfPreTokenizerStep::Prepend;
    if (!j.contains("prepend_scheme")) {
      return j.value("add_prefix_space", true) ? Prepend::Always : Prepend::Never;
    }
    const std::string scheme = j.at("prepend_scheme").get<std::string>();
    if (scheme == "always") return Prepend::Always;
    if (scheme == "first") return Prepend::First;
    if (scheme == "never") return Prepend::Never;
    fail("unknown Metaspace prepend_scheme " + scheme);
  }

  void decoder(const json& j, HfDecoder* d) const {
    if (j.is_null()) return;
    const std::string type = type_of(j, "decoder");
    if (type == "Sequence") {
      for (const json& s : j.at("decoders")) decoder(s, d);
    } else if (type == "ByteLevel") {
      d->byte_level = true;
    } else if (type == "ByteFallback") {
      d->byte_fallback = true;
    } else if (type == "Replace") {
      d->replaces.emplace_back(literal(j.at("pattern")), j.at("content").get<std::string>());
    } else if (type == "Strip") {
      if (j.at("content").get<std::string>() != " " || j.at("stop").get<int>() != 0) {
        fail("unsupported Strip decoder (only leading spaces)");
      }
      d->strip_start = j.at("start").get<int>();
    } else if (type == "Metaspace") {
      d->replaces.emplace_back(j.at("replacement").get<std::string>(), " ");
      d->strip_start = prepend_scheme(j) == HfPreTokenizerStep::Prepend::Never ? 0 : 1;
    } else if (type != "Fuse") {
      fail("unsupported decoder " + type);
    }
  }

 private:
  const std::string& what_;
};

// The name of the token a TemplateProcessing post-processor puts first, or "".
std::string template_first_token(const json& processor) {
  if (!processor.is_object()) return "";
  const std::string type = processor.value("type", "");
  if (type == "Sequence") {
    for (const json& p : processor.value("processors", json::array())) {
      std::string name = template_first_token(p);
      if (!name.empty()) return name;
    }
  }
  if (type != "TemplateProcessing") return "";
  const json single = processor.value("single", json::array());
  if (single.empty() || !single.at(0).contains("SpecialToken")) return "";
  return single.at(0).at("SpecialToken").at("id").get<std::string>();
}

// tokenizer.json names no BOS or EOS. BOS is the token the post-processor's template
// starts with (Llama 2 and 3 have one); otherwise both go by their conventional names.
void find_bos_eos(const json& root, const std::unordered_map<std::string, int>& ids, HfConfig* c) {
  const auto id_of = [&](const std::string& name) {
    for (const HfAddedToken& a : c->added) {
      if (a.content == name) return a.id;
    }
    const auto it = ids.find(name);
    return it == ids.end() ? -1 : it->second;
  };
  const auto first_known = [&](std::initializer_list<const char*> names) {
    for (const char* name : names) {
      if (id_of(name) >= 0) return id_of(name);
    }
    return -1;
  };
  const std::string templated = template_first_token(root.value("post_processor", json()));
  c->bos_id =
      templated.empty() ? first_known({"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>"}) : id_of(templated);
  c->eos_id = first_known({"</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>", "<|im_end|>"});
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::string& bytes, const std::string& what) {
  const Reader r(what);
  HfConfig c;
  try {
    const json root = json::parse(bytes);
    const json& model = root.at("model");
    if (model.contains("type") && model.at("type").get<std::string>() != "BPE") {
      r.fail("unsupported model type " + model.at("type").get<std::string>() + " (only BPE)");
    }
    for (const char* affix : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (model.contains(affix) && !model.at(affix).is_null() && !model.at(affix).get<std::string>().empty()) {
        r.fail(std::string("unsupported BPE ") + affix);
      }
    }
    c.byte_fallback = model.value("byte_fallback", false);
    c.ignore_merges = model.value("ignore_merges", false);
    c.fuse_unk = model.value("fuse_unk", false);
    const json& vocab = model.at("vocab");
    if (!vocab.is_object()) r.fail("model.vocab is not an object");
    const json added = root.value("added_tokens", json::array());
    // Ids must be dense: a bound from the input size keeps hostile ids from allocating.
    const size_t max_tokens = vocab.size() + added.size();
    std::unordered_map<std::string, int> ids;
    const auto check_id = [&](int64_t id, const std::string& token) {
      if (id < 0 || static_cast<uint64_t>(id) >= max_tokens) {
        r.fail("token " + json(token).dump() + " has id " + std::to_string(id) + ", outside 0.." +
               std::to_string(max_tokens - 1));
      }
      return static_cast<int>(id);
    };
    for (const auto& [token, id_json] : vocab.items()) {
      const int id = check_id(id_json.get<int64_t>(), token);
      if (static_cast<size_t>(id) >= c.tokens.size()) c.tokens.resize(id + 1);
      if (!c.tokens[id].empty()) r.fail("id " + std::to_string(id) + " is given to two tokens");
      c.tokens[id] = token;
      ids.emplace(token, id);
    }
    const auto id_of = [&](const std::string& token) {
      const auto it = ids.find(token);
      if (it == ids.end()) {
        r.fail("merge uses " + json(token).dump() + ", which is not in the vocabulary");
      }
      return it->second;
    };
    for (const json& m : model.at("merges")) {
      std::string left, right;
      if (m.is_string()) {  // older files: "left right"
        const std::string s = m.get<std::string>();
        const size_t space = s.find(' ');
        if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
          r.fail("merge " + m.dump() + " is not two tokens");
        }
        left = s.substr(0, space);
        right = s.substr(space + 1);
      } else {
        if (m.size() != 2) r.fail("merge " + m.dump() + " is not two tokens");
        left = m.at(0).get<std::string>();
        right = m.at(1).get<std::string>();
      }
      c.merges.push_back({id_of(left), id_of(right), id_of(left + right)});
    }
    for (const json& a : added) {
      HfAddedToken t;
      t.content = a.at("content").get<std::string>();
      t.id = check_id(a.at("id").get<int64_t>(), t.content);
      t.special = a.value("special", false);
      t.normalized = a.value("normalized", !t.special);
      t.lstrip = a.value("lstrip", false);
      t.rstrip = a.value("rstrip", false);
      if (a.value("single_word", false)) {
        r.fail("unsupported single_word added token " + a.at("content").dump());
      }
      c.added.push_back(std::move(t));
    }
    const json unk = model.value("unk_token", json());
    if (unk.is_string() && ids.count(unk.get<std::string>())) {
      c.unk_id = ids.at(unk.get<std::string>());
    }
    r.normalizer(root.value("normalizer", json()), &c.normalizer);
    r.pre_tokenizer(root.value("pre_tokenizer", json()), &c.pre_tokenizer);
    r.decoder(root.value("decoder", json()), &c.decoder);
    find_bos_eos(root, ids, &c);
  } catch (const json::exception& e) {
    throw FormatError(what + ": invalid tokenizer.json: " + e.what());
  }
  return make_hf_bpe(std::move(c));
}

}  // namespace codecllm::model
