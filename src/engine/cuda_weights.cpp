#include "engine/cuda_weights.hpp"

#include <algorithm>
#include <cstring>
#include <iostream>
#include <iterator>

#include "codecllm/error.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/skinny_gemm.hpp"
#include "model/llama_tensors.hpp"

namespace codecllm::engine {

namespace k = cuda_kernels;
using model::TensorRole;
using model::TensorSpec;

namespace {

const std::vector<int> kGroups(std::begin(model::kLayerGroups), std::end(model::kLayerGroups));
constexpr int kQkv = 0, kO = 3, kGateUp = 4, kDown = 6;  // first matrix of each group

bool is_layer_matrix(TensorRole role) {
  return std::find(std::begin(model::kLayerMatrices), std::end(model::kLayerMatrices), role) !=
         std::end(model::kLayerMatrices);
}

}  // namespace

CudaWeights::CudaWeights(const format::ContainerReader& file, const LlamaConfig& config,
                         const CudaEngineOptions& options, cuda::DeviceMemory& mem, cudaStream_t stream)
    : path_(file.path()), cfg_(config), opt_(options), mem_(mem), stream_(stream) {
  first_ = engine::first_layer(opt_);
  count_ = engine::end_layer(opt_, cfg_) - first_;
  if (first_ < 0 || count_ < 1 || first_ + count_ > cfg_.layers) {
    throw Error(path_ + ": layers " + std::to_string(first_) + ".." + std::to_string(first_ + count_ - 1) +
                " outside the model's " + std::to_string(cfg_.layers));
  }
  embeds_ = first_ == 0;
  has_head_ = first_ + count_ == cfg_.layers;
  act_ = model_act(file, cfg_);
  load_small_tensors(file);
  load_layers(file);
}

// The model's 16-bit type is that of its final norm (never int8).
k::Act CudaWeights::model_act(const format::ContainerReader& file, const LlamaConfig& config) {
  const TensorSpec spec = model::tensor_spec(config, TensorRole::FinalNorm);
  const format::TensorRecord& norm = model::find_tensor(file, spec);
  return norm.dtype == DType::F16 ? k::Act::F16 : k::Act::BF16;
}

CudaWeights::~CudaWeights() {
  streamer_.reset();  // its streams and slots before the decoders it drives
  decoders_.clear();
}

void CudaWeights::require_act(const format::TensorRecord& r) {
  if (r.mode == format::TensorMode::Int8) return;
  if (act_ == k::Act::F16 ? r.dtype == DType::F16 : r.dtype == DType::BF16) return;
  if (act_ == k::Act::BF16 && r.dtype == DType::F32 && r.transform == format::Transform::FloatSplit) {
    rounded_f32_ = true;
    return;
  }
  throw Error(path_ + ": tensor '" + r.name + "' is " + dtype_name(r.dtype) + " in a model whose final norm is " +
              (act_ == k::Act::F16 ? "F16" : "BF16") +
              "; the CUDA backend runs BF16 models (F32 tensors rounded to BF16), F16 models, and int8-mode "
              "matrices in either");
}

const format::TensorRecord& CudaWeights::need(const format::ContainerReader& file, const TensorSpec& spec) {
  const format::TensorRecord& r = model::find_tensor(file, spec);
  require_act(r);
  return r;
}

// Weights reach the kernels in the model's 16-bit type (BF16 or F16 tensors as they are;
// float32 ones of a BF16 model rounded to nearest even by the decoder), int8-mode ones
// dequantized to it by the decoder or kept int8 for the W8A16 kernel.
cuda::Int8Out CudaWeights::dequantized() const {
  return act_ == k::Act::F16 ? cuda::Int8Out::F16 : cuda::Int8Out::Bf16;
}

cuda::DecoderOptions CudaWeights::decoder_options(cuda::Int8Out int8) const {
  cuda::DecoderOptions o;
  o.f32_as_bf16 = act_ == k::Act::BF16;
  o.int8_output = int8;
  return o;
}

// Decodes tensors once into new device buffers.
std::vector<void*> CudaWeights::decode_resident(const format::ContainerReader& file,
                                                const std::vector<TensorSpec>& specs, cuda::Int8Out int8) {
  std::vector<std::string> names;
  names.reserve(specs.size());
  for (const TensorSpec& t : specs) names.push_back(need(file, t).name);
  cuda::GpuDecoder dec(file, names, decoder_options(int8));
  std::vector<void*> out;
  for (size_t i = 0; i < names.size(); ++i) {
    out.push_back(mem_.device(dec.output_bytes(i), "tensor '" + names[i] + "'"));
    memory_.weight_bytes += dec.output_bytes(i);
  }
  dec.decode_from_host(dec.host_range().data(), out.data(), stream_);
  dec.check(stream_);
  return out;
}

// Host placements keep the embedding table and the lm_head in pinned host memory, so that VRAM
// holds no weights beyond the norms and the layer scratch: kernels read the embedding rows of
// a step in place (unified addressing maps them), and the lm_head streams through the slots.
const void* CudaWeights::decode_to_host(const format::ContainerReader& file, const TensorSpec& spec,
                                        cuda::Int8Out int8) {
  const std::string name = need(file, spec).name;
  cuda::GpuDecoder dec(file, {name}, decoder_options(int8));
  const uint64_t bytes = dec.output_bytes(0);
  void* tmp = nullptr;
  CLLM_CUDA_CHECK(cudaMalloc(&tmp, bytes));  // load time only, freed below
  try {
    dec.decode_from_host(dec.host_range().data(), &tmp, stream_);
    dec.check(stream_);
  } catch (...) {
    cudaFree(tmp);
    throw;
  }
  void* host = mem_.pinned(bytes, "tensor '" + name + "'");
  const cudaError_t e = cudaMemcpy(host, tmp, bytes, cudaMemcpyDeviceToHost);
  cudaFree(tmp);
  CLLM_CUDA_CHECK(e);
  memory_.host_pinned_bytes += bytes;
  return host;
}

// Copies the row scales of int8 matrices into one device array, in the given order.
float* CudaWeights::upload_scales(const format::ContainerReader& file,
                                  const std::vector<const format::TensorRecord*>& records) {
  std::vector<float> all;
  for (const format::TensorRecord* r : records) {
    const format::PlaneRecord* p = r->plane("scales");
    if (p == nullptr || r->shape.empty() || p->size != r->shape[0] * sizeof(float)) {
      throw FormatError(path_ + ": tensor '" + r->name + "': int8 scales do not match its " +
                        std::to_string(r->shape.empty() ? 0 : r->shape[0]) + " rows");
    }
    const ByteSpan bytes = file.payload(*p);
    const size_t at = all.size();
    all.resize(at + r->shape[0]);
    std::memcpy(all.data() + at, bytes.data(), bytes.size());
  }
  auto* d = static_cast<float*>(mem_.device(all.size() * sizeof(float), "int8 row scales"));
  CLLM_CUDA_CHECK(cudaMemcpy(d, all.data(), all.size() * sizeof(float), cudaMemcpyHostToDevice));
  memory_.weight_bytes += all.size() * sizeof(float);
  return d;
}

uint64_t CudaWeights::lm_head_row_bytes() const { return uint64_t(cfg_.hidden) * (lm_head_.scales != nullptr ? 1 : 2); }

Product CudaWeights::lm_head_piece(const uint8_t* rows, uint64_t first_row, uint64_t count) const {
  const float* scales = lm_head_.scales != nullptr ? lm_head_.scales + first_row : nullptr;
  return dense(rows, scales, cfg_.hidden, int(count));
}

void CudaWeights::load_small_tensors(const format::ContainerReader& file) {
  const bool on_host = opt_.placement == Placement::Host || opt_.placement == Placement::HostRaw;
  auto load = [&](const TensorSpec& t, cuda::Int8Out int8) {
    return on_host ? decode_to_host(file, t, int8) : decode_resident(file, {t}, int8)[0];
  };
  // gpu-compressed keeps an untied embedding table in pinned host memory as well: a step reads
  // one row of it in place over PCIe (microseconds), and VRAM holds the whole table less.
  const TensorSpec embed = model::tensor_spec(cfg_, TensorRole::Embedding);
  if (embeds_ || (has_head_ && cfg_.tie_embeddings)) {  // a tied lm_head is the embedding
    embed_ = opt_.placement == Placement::GpuCompressed && !cfg_.tie_embeddings
                 ? decode_to_host(file, embed, dequantized())
                 : load(embed, dequantized());
  }
  const int H = cfg_.hidden, V = cfg_.vocab;
  const TensorSpec head = model::tensor_spec(cfg_, TensorRole::LmHead);
  if (!has_head_) {
    // an earlier share of a split model: no lm_head, no final norm
  } else if (cfg_.tie_embeddings) {
    lm_head_ = dense(embed_, nullptr, H, V);
  } else if (const format::TensorRecord& r = need(file, head);
             r.mode == format::TensorMode::Int8 && gemv16_takes(H, opt_.batch)) {
    // Every placement keeps an int8 lm_head int8, so that all of them compute the same logits.
    const void* w = load(head, cuda::Int8Out::Int8);
    lm_head_ = dense(w, upload_scales(file, {&r}), H, V);
  } else {
    lm_head_ = dense(load(head, dequantized()), nullptr, H, V);
  }
  lm_head_on_host_ = on_host && has_head_;
  if (lm_head_on_host_) memory_.streamed_bytes_per_step += uint64_t(V) * lm_head_row_bytes();
  if (has_head_)
    final_norm_ = decode_resident(file, {model::tensor_spec(cfg_, TensorRole::FinalNorm)}, dequantized())[0];
  layers_.resize(size_t(count_));
  for (int l = 0; l < count_; ++l) {
    std::vector<TensorSpec> small;
    for (TensorSpec& t : model::layer_tensors(cfg_, first_ + l))
      if (!is_layer_matrix(t.role)) small.push_back(std::move(t));
    const std::vector<void*> at = decode_resident(file, small, dequantized());
    LayerWeights& L = layers_[size_t(l)];
    for (size_t i = 0; i < small.size(); ++i) {
      switch (small[i].role) {
        case TensorRole::AttnNorm:
          L.attn_norm = at[i];
          break;
        case TensorRole::FfnNorm:
          L.ffn_norm = at[i];
          break;
        case TensorRole::QBias:
          L.q_bias = at[i];
          break;
        case TensorRole::KBias:
          L.k_bias = at[i];
          break;
        case TensorRole::VBias:
          L.v_bias = at[i];
          break;
        case TensorRole::OBias:
          L.o_bias = at[i];
          break;
        default:
          throw Error(path_ + ": tensor '" + small[i].name + "' has no place in a layer");
      }
    }
  }
}

// Whether the layers can decode their BF16 exponents alone for SplitGemv products: batch 1 on
// a BF16 model whose products the split GEMV takes, some matrix the decoder finds eligible, each
// matrix eligible in every layer or in none (the slot layout is layer 0's), and each group (one
// product) eligible wholly or not at all.
bool CudaWeights::exponents_only_eligible(const format::ContainerReader& file,
                                          const std::vector<std::vector<std::string>>& names) const {
  const int q_dim = cfg_.heads * cfg_.head_dim, B = opt_.batch;
  if (act_ != k::Act::BF16 || int8_layers_ || !gemv16_takes(cfg_.hidden, B) || !gemv16_takes(q_dim, B) ||
      !gemv16_takes(cfg_.intermediate, B))
    return false;
  std::vector<bool> split(model::kNumLayerMatrices);
  for (size_t i = 0; i < split.size(); ++i) {
    auto eligible = [&](const std::vector<std::string>& layer) {
      return cuda::GpuDecoder::exponents_only_eligible(file, *file.index().find_tensor(layer[i]));
    };
    split[i] = eligible(names[0]);
    for (const auto& layer : names)
      if (eligible(layer) != split[i]) return false;
  }
  size_t first = 0;
  for (int g : kGroups) {
    const auto count = std::count(split.begin() + long(first), split.begin() + long(first) + g, true);
    if (count != 0 && count != g) return false;
    first += size_t(g);
  }
  return std::find(split.begin(), split.end(), true) != split.end();
}

void CudaWeights::make_decoders(const format::ContainerReader& file, const std::vector<std::vector<std::string>>& names,
                                bool exponents_only) {
  decoders_.clear();
  cuda::DecoderOptions d = decoder_options(int8_layers_ ? cuda::Int8Out::Int8 : dequantized());
  d.external_scratch = true;
  d.bf16_exponents_only = exponents_only;
  for (const auto& layer : names) {
    decoders_.push_back(std::make_unique<cuda::GpuDecoder>(file, layer, d));
    decoders_.back()->set_blocks_per_sm(opt_.decode_blocks_per_sm);
  }
}

// The byte counts a plan adds up, from the decoders that will run (whole values) and the slot
// layout the streamer will allocate.
PlanRequest CudaWeights::plan_request(const format::ContainerReader& file,
                                      const std::vector<std::vector<std::string>>& names,
                                      bool exponents_possible) const {
  PlanRequest r;
  const uint64_t layer_bytes = cuda::slot_layout(*decoders_[0], kGroups).layer_bytes;
  for (const auto& d : decoders_) {
    r.layers.push_back(LayerBytes{layer_bytes, d->range_bytes(), d->device_bytes()});
    r.decoder_scratch_bytes = std::max(r.decoder_scratch_bytes, d->scratch_bytes());
  }
  r.fixed_bytes = mem_.device_bytes();
  r.budget_bytes = opt_.vram_budget;
  r.prefetch_depth = opt_.prefetch_depth;
  r.compressed_slots = opt_.decode_slots > 0 ? opt_.decode_slots : default_compressed_slots(int8_layers_);
  r.compressed_products_in_place = products_in_place_;
  if (exponents_possible) {  // the slot layout of an exponent decoder, asked of one
    cuda::DecoderOptions d = decoder_options(dequantized());
    d.external_scratch = true;
    d.bf16_exponents_only = true;
    r.exponent_slot_bytes = cuda::slot_layout(cuda::GpuDecoder(file, names[0], d), kGroups).layer_bytes;
  }
  return r;
}

void CudaWeights::load_layers(const format::ContainerReader& file) {
  const auto L = size_t(count_);
  std::vector<std::vector<std::string>> names(L);
  std::vector<const format::TensorRecord*> records;  // [local layer * 7 + matrix]
  int8_layers_ = true;
  for (size_t l = 0; l < L; ++l) {
    for (TensorRole role : model::kLayerMatrices) {
      const TensorSpec spec = model::tensor_spec(cfg_, role, first_ + int(l));
      const format::TensorRecord& r = need(file, spec);
      names[l].push_back(r.name);
      records.push_back(&r);
      int8_layers_ = int8_layers_ && r.mode == format::TensorMode::Int8 && gemv16_takes(int(r.shape[1]), opt_.batch);
    }
  }
  if (int8_layers_) layer_scales_ = upload_scales(file, records);

  // Exp4 layers are made to be multiplied in place (no decode pass): always, at batch 1.
  const bool exp4_layers = std::all_of(records.begin(), records.end(), [](const format::TensorRecord* r) {
    const format::PlaneRecord* e = r->plane("exponent");
    return e != nullptr && e->codec == format::PlaneCodec::Exp4;
  });
  // At batches of 2 .. 8 exp4 layers are too, by the tensor-core kernel's exp4 twin.
  const bool batched_in_place =
      exp4_layers && opt_.own_batch_products && opt_.batch > 1 && opt_.batch <= cuda::kSkinnyMaxBatch;
  const bool in_place_wanted = ((opt_.products_from_compressed || exp4_layers) && opt_.batch == 1) || batched_in_place;
  const bool split_possible = opt_.bf16_exponents_only && !in_place_wanted && exponents_only_eligible(file, names);
  // Products straight from the compressed copy when every tensor's decoder takes them.
  auto products_in_place = [&](const std::vector<Placement>& homes) {
    if (!in_place_wanted) return false;
    for (size_t l = 0; l < L; ++l) {
      for (size_t i = 0; homes[l] == Placement::GpuCompressed && i < decoders_[l]->num_tensors(); ++i)
        if (!(batched_in_place ? decoders_[l]->gemm_ready(i) : decoders_[l]->gemv_ready(i))) return false;
    }
    return true;
  };
  std::vector<Placement> homes(L, opt_.placement);
  if (opt_.placement == Placement::Auto) {
    if (opt_.vram_budget == 0) throw Error("--placement auto needs --vram-budget SIZE");
    make_decoders(file, names, false);
    products_in_place_ = products_in_place(std::vector<Placement>(L, Placement::GpuCompressed));
    const PlanRequest req = plan_request(file, names, split_possible && !products_in_place_);
    plan_ = plan_placement(req);
    if (opt_.print_plan) std::cerr << describe_plan(plan_, req);
    homes = plan_.layers;
    products_in_place_ = products_in_place(homes);
    exponents_only_ = split_possible && !products_in_place_ && std::all_of(homes.begin(), homes.end(), [](Placement p) {
                        return p == Placement::GpuCompressed;
                      });
    if (exponents_only_) make_decoders(file, names, true);
  } else {
    exponents_only_ = split_possible && opt_.placement == Placement::GpuCompressed;
    make_decoders(file, names, exponents_only_);
    products_in_place_ = products_in_place(homes);
    plan_ = plan_of(plan_request(file, names, false), homes);
  }
  memory_.planned_device_bytes = plan_.total_bytes;

  cuda::StreamerOptions so;
  so.prefetch_depth = opt_.prefetch_depth;
  so.decode_slots = std::max(plan_.decode_slots, 1);
  std::vector<cuda::StreamedLayer> streamed;
  for (size_t l = 0; l < L; ++l)
    streamed.push_back({homes[l], decoders_[l].get(), products_in_place_ && homes[l] == Placement::GpuCompressed});
  streamer_ = std::make_unique<cuda::WeightStreamer>(path_, std::move(streamed),
                                                     cuda::slot_layout(*decoders_[0], kGroups), so, stream_);
  for (size_t l = 0; l < L; ++l)
    if (homes[l] == Placement::Gpu || homes[l] == Placement::HostRaw) decoders_[l].reset();  // used at load only
  set_products(records);

  const cuda::WeightStreamer::Memory m = streamer_->memory();
  memory_.weight_bytes += m.decoded_weights + m.compressed_weights;
  memory_.scratch_bytes += m.scratch + m.tables;
  memory_.host_pinned_bytes += m.host_pinned;
  memory_.device_bytes = m.decoded_weights + m.compressed_weights + m.tables + m.scratch;  // the streamer's own
  for (int l = 0; l < count_; ++l) memory_.streamed_bytes_per_step += streamer_->streamed_bytes(l);
  // Bytes of weights the matmuls read: a split matrix's sign_mantissa plane besides its slot.
  uint64_t layer_read = streamer_->layer_bytes();
  for (int i = 0; exponents_only_ && i < model::kNumLayerMatrices; ++i)
    if (decoders_[0]->exponents_only(size_t(i))) layer_read += records[size_t(i)]->num_elements();
  memory_.matmul_weight_bytes_per_step =
      layer_read * uint64_t(count_) + (has_head_ ? uint64_t(cfg_.vocab) * lm_head_row_bytes() : 0);
}

// Each layer's four products, from where the streamer put its bytes and how its decoder decodes.
void CudaWeights::set_products(const std::vector<const format::TensorRecord*>& records) {
  int rows[model::kNumLayerMatrices];  // the same in every layer: shapes were checked against the config
  for (int i = 0; i < model::kNumLayerMatrices; ++i) rows[i] = int(records[size_t(i)]->shape[0]);
  uint64_t layer_scale_rows = 0;
  for (int r : rows) layer_scale_rows += uint64_t(r);
  for (int l = 0; l < count_; ++l) {
    const cuda::GpuDecoder* dec = decoders_[size_t(l)].get();
    const bool in_place = products_in_place_ && streamer_->home(l) == Placement::GpuCompressed;
    auto group = [&](int first, int count, int in) {
      Product p;
      p.in = in;
      for (int j = 0; j < count; ++j) {
        const size_t tensor = size_t(first) + size_t(j);
        if (exponents_only_ && dec->exponents_only(tensor)) {
          p.split.sign_mantissa[j] = dec->resident_sign_mantissa(tensor);
          p.split.end[j] = p.out + rows[first + j];
          p.split.count = count;
        }
        p.out += rows[first + j];
      }
      if (in_place) {
        p.kind = Product::Kind::FromCompressed;
        p.decoder = decoders_[size_t(l)].get();
        p.first = first;
        p.count = count;
        return p;
      }
      p.w = streamer_->tensor(l, first);
      if (p.split.count > 0) {
        p.kind = Product::Kind::SplitGemv;
        // The split GEMV's 16-byte loads: the container's 4 KiB-aligned payloads give this
        // alignment (checked, not assumed).
        for (int j = 0; j < count; ++j) {
          if (reinterpret_cast<uintptr_t>(p.split.sign_mantissa[j]) % 16 != 0 ||
              reinterpret_cast<uintptr_t>(p.w) % 16 != 0) {
            throw Error(path_ + ": tensor '" +
                        records[size_t(l) * model::kNumLayerMatrices + size_t(first) + size_t(j)]->name +
                        "': its planes are not 16-byte aligned for the split GEMV");
          }
        }
        return p;
      }
      uint64_t scale_row = uint64_t(l) * layer_scale_rows;
      for (int i = 0; i < first; ++i) scale_row += uint64_t(rows[i]);
      return dense(p.w, int8_layers_ ? layer_scales_ + scale_row : nullptr, in, p.out);
    };
    LayerWeights& L = layers_[size_t(l)];
    L.qkv = group(kQkv, 3, cfg_.hidden);
    L.o = group(kO, 1, cfg_.heads * cfg_.head_dim);
    L.gate_up = group(kGateUp, 2, cfg_.hidden);
    L.down = group(kDown, 1, cfg_.intermediate);
  }
}

bool CudaWeights::all_gpu() const {
  for (int l = 0; l < streamer_->num_layers(); ++l)
    if (streamer_->home(l) != Placement::Gpu) return false;
  return true;
}

std::string CudaWeights::describe_placement() const {
  std::string s = placement_name(opt_.placement);
  if (opt_.placement == Placement::Auto) s += " (" + summarize_plan(plan_) + ")";
  return s;
}

std::string CudaWeights::describe() const {
  std::string s;
  bool any_in_place = false;  // only gpu-compressed layers multiply in place
  for (int l = 0; streamer_ != nullptr && l < count_; ++l)
    any_in_place = any_in_place || (products_in_place_ && streamer_->home(l) == Placement::GpuCompressed);
  if (any_in_place) s += ", products straight from compressed weights";
  if (exponents_only_) s += ", exponents decoded per layer (sign and mantissa read in place)";
  const std::string t = act_ == k::Act::F16 ? "f16" : "bf16";
  s += int8_layers_   ? ", int8 layer weights (W8A" + std::string(act_ == k::Act::F16 ? "F16)" : "BF16)")
       : rounded_f32_ ? ", f32 weights rounded to bf16"
                      : ", " + t + " weights";
  return s;
}

}  // namespace codecllm::engine
