#include "cuda/weight_streamer.hpp"

#include <algorithm>
#include <cstring>

#include "codec/parallel_for.hpp"
#include "codecllm/bytes.hpp"
#include "codecllm/error.hpp"
#include "cuda/cuda_check.hpp"
#include "format/checksum.hpp"

namespace codecllm::cuda {

namespace {

constexpr uint64_t kAlign = 256;  // where each group of a layer buffer starts

cudaEvent_t new_event() {
  cudaEvent_t e = nullptr;
  CLLM_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return e;
}

void wait(cudaStream_t s, cudaEvent_t e) { CLLM_CUDA_CHECK(cudaStreamWaitEvent(s, e, 0)); }
void record(cudaEvent_t e, cudaStream_t s) { CLLM_CUDA_CHECK(cudaEventRecord(e, s)); }

}  // namespace

SlotLayout slot_layout(const GpuDecoder& decoder, const std::vector<int>& groups) {
  SlotLayout out;
  size_t i = 0;
  for (int g : groups) {
    out.layer_bytes = align_up(out.layer_bytes, kAlign);
    for (int k = 0; k < g; ++k, ++i) {
      if (i >= decoder.num_tensors()) throw Error("slot layout: groups name more tensors than a layer has");
      out.offsets.push_back(out.layer_bytes);
      out.layer_bytes += decoder.output_bytes(i);
    }
  }
  if (i != decoder.num_tensors()) throw Error("slot layout: groups do not cover a layer's tensors");
  out.layer_bytes = align_up(out.layer_bytes, kAlign);
  return out;
}

WeightStreamer::WeightStreamer(const std::string& path, std::vector<StreamedLayer> layers, SlotLayout layout,
                               const StreamerOptions& options, cudaStream_t load_stream)
    : path_(path), mem_(path), layout_(std::move(layout)) {
  if (options.prefetch_depth < 1 || options.decode_slots < 1)
    throw Error("prefetch depth and decode slots must be at least 1");
  layers_.resize(layers.size());
  uint64_t max_range = 0, max_scratch = 0;
  for (size_t l = 0; l < layers_.size(); ++l) {
    Layer& L = layers_[l];
    L.home = layers[l].home;
    L.decoder = layers[l].decoder;
    if (L.home == Placement::Auto || L.decoder == nullptr)
      throw Error("WeightStreamer: a layer needs a placement and a decoder");
    if (L.decoder->num_tensors() != layout_.offsets.size())
      throw Error(path_ + ": layer " + std::to_string(l) + " has another number of tensors than layer 0");
    for (size_t i = 0; i < layout_.offsets.size(); ++i) {
      const uint64_t end = i + 1 < layout_.offsets.size() ? layout_.offsets[i + 1] : layout_.layer_bytes;
      if (layout_.offsets[i] + L.decoder->output_bytes(i) > end)
        throw Error(path_ + ": tensor '" + L.decoder->record(i).name + "' is larger than in layer 0");
    }
    if (L.home == Placement::Host) {
      L.host_rank = static_cast<int>(hosted_.size());
      hosted_.push_back(static_cast<int>(l));
      max_range = std::max(max_range, L.decoder->range_bytes());
    }
    max_scratch = std::max(max_scratch, L.decoder->scratch_bytes());
    const bool in_place = L.home == Placement::GpuCompressed && layers[l].products_in_place;
    if (L.home == Placement::Gpu || in_place) continue;
    L.rank = static_cast<int>(streamed_.size());
    streamed_.push_back(static_cast<int>(l));
  }
  slots_ = streamed_.empty() ? 0 : std::min<int>(options.decode_slots, static_cast<int>(streamed_.size()));
  stages_ = hosted_.empty() ? 0 : std::min<int>(options.prefetch_depth, static_cast<int>(hosted_.size()));
  for (int s = 0; s < slots_; ++s) {
    slot_.push_back(static_cast<uint8_t*>(mem_.device(layout_.layer_bytes, "a decoded-layer scratch slot")));
    slot_ready_.push_back(new_event());
    slot_free_.push_back(new_event());
  }
  for (int s = 0; s < stages_; ++s) {
    stage_.push_back(static_cast<uint8_t*>(mem_.device(max_range, "a compressed-layer staging buffer")));
    copied_.push_back(new_event());
    stage_free_.push_back(new_event());
  }
  // With n slots, one holds the layer computing and n - 1 may decode at once.
  const int streams = std::max(slots_ - 1, 1);
  for (int d = 0; d < streams; ++d) {
    decoder_scratch_.push_back(max_scratch > 0 ? static_cast<uint8_t*>(mem_.device(max_scratch, "decoder scratch"))
                                               : nullptr);
    decode_done_.push_back(new_event());
    decode_.push_back(nullptr);
    CLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&decode_.back(), cudaStreamNonBlocking));
  }
  memory_.scratch = mem_.device_bytes();
  fork_ = new_event();
  copy_done_ = new_event();
  CLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking));

  copy_to_pinned();
  uint8_t* tmp = nullptr;
  for (size_t l = 0; l < layers_.size(); ++l) {
    Layer& L = layers_[l];
    const uint64_t before = mem_.device_bytes();
    switch (L.home) {
      case Placement::Gpu:
        L.resident = static_cast<uint8_t*>(mem_.device(layout_.layer_bytes, "decoded layer weights"));
        decode_at_load(static_cast<int>(l), L.resident, load_stream);
        L.decoder = nullptr;  // its tables are the caller's to free
        memory_.decoded_weights += mem_.device_bytes() - before;
        break;
      case Placement::GpuCompressed:
        L.decoder->upload_resident(load_stream);
        memory_.compressed_weights += L.decoder->range_bytes();
        memory_.tables += L.decoder->device_bytes() - L.decoder->range_bytes();
        break;
      case Placement::Host:
        memory_.tables += L.decoder->device_bytes();
        break;
      case Placement::HostRaw:
        // Decoded on the GPU once and parked in pinned host memory.
        if (tmp == nullptr) tmp = slot_[0];
        decode_at_load(static_cast<int>(l), tmp, load_stream);
        CLLM_CUDA_CHECK(cudaMemcpyAsync(const_cast<uint8_t*>(L.host), tmp, layout_.layer_bytes, cudaMemcpyDeviceToHost,
                                        load_stream));
        CLLM_CUDA_CHECK(cudaStreamSynchronize(load_stream));
        L.decoder = nullptr;
        break;
      case Placement::Auto:
        break;
    }
  }
  memory_.host_pinned = mem_.pinned_bytes();
  CLLM_CUDA_CHECK(cudaStreamSynchronize(load_stream));
}

WeightStreamer::~WeightStreamer() {
  cudaDeviceSynchronize();
  for (auto* v : {&slot_ready_, &slot_free_, &copied_, &stage_free_, &decode_done_})
    for (cudaEvent_t e : *v) cudaEventDestroy(e);
  for (cudaEvent_t e : {fork_, copy_done_})
    if (e != nullptr) cudaEventDestroy(e);
  for (cudaStream_t s : decode_)
    if (s != nullptr) cudaStreamDestroy(s);
  if (copy_ != nullptr) cudaStreamDestroy(copy_);
}

uint64_t WeightStreamer::streamed_bytes(int l) const {
  const Layer& L = layers_[l];
  return L.home == Placement::Host || L.home == Placement::HostRaw ? L.host_bytes : 0;
}

uint8_t* WeightStreamer::layer_base(int l) const {
  const Layer& L = layers_[l];
  return L.home == Placement::Gpu ? L.resident : slot_[L.rank % slots_];
}

void WeightStreamer::outputs(uint8_t* base, void** out) const {
  for (size_t i = 0; i < layout_.offsets.size(); ++i) out[i] = base + layout_.offsets[i];
}

void WeightStreamer::decode_at_load(int l, uint8_t* dst, cudaStream_t stream) {
  Layer& L = layers_[l];
  void* out[kMaxTensorsPerLaunch];
  outputs(dst, out);
  uint8_t* scratch = L.decoder->scratch_bytes() > 0 && !decoder_scratch_.empty() ? decoder_scratch_[0] : nullptr;
  L.decoder->decode_from_host(L.decoder->host_range().data(), out, stream, scratch);
  L.decoder->check(stream);      // synchronizes: the staging copy is done with
  L.decoder->release_staging();  // one layer's range at a time, not every layer's, at load
}

// Host layers: the compressed range is copied out of the file map into pinned memory and its
// payload checksums verified on that copy, so what streams each token is exactly what was
// checked, whatever happens to the file afterwards. HostRaw layers only get their buffer.
void WeightStreamer::copy_to_pinned() {
  std::vector<int> to_copy;
  for (size_t l = 0; l < layers_.size(); ++l) {
    Layer& L = layers_[l];
    if (L.home == Placement::Host) {
      L.host_bytes = L.decoder->range_bytes();
      L.host = static_cast<uint8_t*>(mem_.pinned(L.host_bytes, "layer " + std::to_string(l) + " compressed weights"));
      to_copy.push_back(static_cast<int>(l));
    } else if (L.home == Placement::HostRaw) {
      L.host_bytes = layout_.layer_bytes;
      L.host = static_cast<uint8_t*>(mem_.pinned(L.host_bytes, "layer " + std::to_string(l) + " decoded weights"));
    }
  }
  parallel_for(to_copy.size(), 0, [&](size_t k) {
    Layer& L = layers_[to_copy[k]];
    GpuDecoder& d = *L.decoder;
    auto* dst = const_cast<uint8_t*>(L.host);
    std::memcpy(dst, d.host_range().data(), L.host_bytes);
    for (size_t i = 0; i < d.num_tensors(); ++i) {
      for (const auto& p : d.record(i).planes) {
        if (format::xxh3_64(dst + (p.offset - d.range_offset()), p.size) != p.payload_xxh3) {
          throw FormatError(
              path_ + ": tensor '" + d.record(i).name + "' plane '" + p.role +
              "': payload checksum mismatch while loading it into host memory (corrupt or changing file)");
        }
      }
    }
  });
}

void WeightStreamer::enqueue_host_copy(int h) {
  Layer& L = layers_[hosted_[h]];
  const int s = h % stages_;
  wait(copy_, stage_free_[s]);
  CLLM_CUDA_CHECK(cudaMemcpyAsync(stage_[s], L.host, L.host_bytes, cudaMemcpyHostToDevice, copy_));
  record(copied_[s], copy_);
}

// Fetch of streamed layer `rank` into slot rank % slots. Waits name the latest record of an
// event enqueued so far; the call order (see release) makes that the right one.
void WeightStreamer::enqueue_fetch(int rank, bool slot_used_this_step) {
  Layer& L = layers_[streamed_[rank]];
  const int slot = rank % slots_;
  void* out[kMaxTensorsPerLaunch];
  outputs(slot_[slot], out);
  // Consecutive layers decode on different streams, so that with three or more slots the
  // decodes of the next layers run at once (one layer's chunks fill only part of the GPU).
  const int d = rank % static_cast<int>(decode_.size());
  cudaStream_t decode = decode_[d];
  uint8_t* scratch = L.decoder && L.decoder->scratch_bytes() > 0 ? decoder_scratch_[d] : nullptr;
  switch (L.home) {
    case Placement::GpuCompressed:
      if (slot_used_this_step) wait(decode, slot_free_[slot]);
      L.decoder->decode(L.decoder->resident(), out, decode, scratch);
      record(slot_ready_[slot], decode);
      break;
    case Placement::Host: {
      const int h = L.host_rank, s = h % stages_;
      if (slot_used_this_step) wait(decode, slot_free_[slot]);
      if (h >= stages_) wait(decode, copied_[s]);  // earlier ones were copied by the previous step
      L.decoder->decode(stage_[s], out, decode, scratch);
      record(slot_ready_[slot], decode);
      record(stage_free_[s], decode);
      if (h + stages_ < static_cast<int>(hosted_.size())) enqueue_host_copy(h + stages_);
      break;
    }
    case Placement::HostRaw:
      if (!slot_used_this_step) break;  // copied by the previous step
      wait(copy_, slot_free_[slot]);
      CLLM_CUDA_CHECK(cudaMemcpyAsync(slot_[slot], L.host, L.host_bytes, cudaMemcpyHostToDevice, copy_));
      record(slot_ready_[slot], copy_);
      break;
    case Placement::Gpu:
    case Placement::Auto:
      break;
  }
}

void WeightStreamer::prefetch() {
  for (int h = 0; h < stages_; ++h) {
    const Layer& L = layers_[hosted_[h]];
    CLLM_CUDA_CHECK(cudaMemcpyAsync(stage_[h], L.host, L.host_bytes, cudaMemcpyHostToDevice, copy_));
  }
  for (int r = 0; r < slots_; ++r) {
    const Layer& L = layers_[streamed_[r]];
    if (L.home == Placement::HostRaw)
      CLLM_CUDA_CHECK(cudaMemcpyAsync(slot_[r], L.host, L.host_bytes, cudaMemcpyHostToDevice, copy_));
    if (carried(r)) enqueue_fetch(r, false);
  }
  CLLM_CUDA_CHECK(cudaStreamSynchronize(copy_));
  for (cudaStream_t decode : decode_) CLLM_CUDA_CHECK(cudaStreamSynchronize(decode));
  prefetched_ = true;
}

void WeightStreamer::begin_step(cudaStream_t compute) {
  if (streamed_.empty()) return;
  if (!prefetched_) throw Error("WeightStreamer: prefetch() must run once before the first step");
  record(fork_, compute);
  wait(copy_, fork_);
  for (cudaStream_t decode : decode_) wait(decode, fork_);
  for (int r = 0; r < slots_; ++r)
    if (!carried(r)) enqueue_fetch(r, false);
}

void WeightStreamer::acquire(int l, cudaStream_t compute) {
  const Layer& L = layers_[l];
  if (L.rank < 0) return;  // nothing streams through a slot
  // Landed before the step began (the previous end_step joined its copies and decodes).
  if ((L.home == Placement::HostRaw && L.rank < slots_) || carried(L.rank)) return;
  wait(compute, slot_ready_[L.rank % slots_]);
}

void WeightStreamer::release(int l, cudaStream_t compute) {
  const Layer& L = layers_[l];
  if (L.rank < 0) return;
  record(slot_free_[L.rank % slots_], compute);
  if (L.rank + slots_ < static_cast<int>(streamed_.size())) enqueue_fetch(L.rank + slots_, true);
}

void WeightStreamer::stream_rows(const uint8_t* host, uint64_t rows, uint64_t row_bytes, cudaStream_t compute,
                                 const std::function<void(const uint8_t*, uint64_t, uint64_t)>& consume) {
  if (slots_ == 0) throw Error("WeightStreamer: streaming rows needs a decode slot");
  const uint64_t per_piece = layout_.layer_bytes / row_bytes;
  if (per_piece == 0) throw Error("WeightStreamer: a row is larger than a decode slot");
  int piece = 0;
  for (uint64_t first = 0; first < rows; first += per_piece, ++piece) {
    const uint64_t n = std::min(per_piece, rows - first);
    const int slot = piece % slots_;
    wait(copy_, slot_free_[slot]);  // recorded this step: every slot held a layer before
    CLLM_CUDA_CHECK(
        cudaMemcpyAsync(slot_[slot], host + first * row_bytes, n * row_bytes, cudaMemcpyHostToDevice, copy_));
    record(slot_ready_[slot], copy_);
    wait(compute, slot_ready_[slot]);
    consume(slot_[slot], first, n);
    record(slot_free_[slot], compute);
  }
}

void WeightStreamer::end_step(cudaStream_t compute) {
  if (streamed_.empty()) return;
  // The next step's first fetches: Host layers into the staging buffers as soon as their last
  // decode this step is done; HostRaw layers into their slots once this step releases them.
  for (int h = 0; h < stages_; ++h) enqueue_host_copy(h);
  for (int r = 0; r < slots_; ++r) {
    const Layer& L = layers_[streamed_[r]];
    if (L.home != Placement::HostRaw) continue;
    wait(copy_, slot_free_[r]);
    CLLM_CUDA_CHECK(cudaMemcpyAsync(slot_[r], L.host, L.host_bytes, cudaMemcpyHostToDevice, copy_));
  }
  for (int r = 0; r < slots_; ++r)
    if (carried(r)) enqueue_fetch(r, true);
  record(copy_done_, copy_);
  wait(compute, copy_done_);
  for (size_t d = 0; d < decode_.size(); ++d) {
    record(decode_done_[d], decode_[d]);
    wait(compute, decode_done_[d]);
  }
}

void WeightStreamer::check() {
  for (cudaStream_t decode : decode_) CLLM_CUDA_CHECK(cudaStreamSynchronize(decode));
  for (Layer& L : layers_)
    if (L.decoder) L.decoder->check(decode_[0]);  // synchronized above: any stream reads the status
}

}  // namespace codecllm::cuda
