// One device's share of a model split across GPUs: the CUDA engine over layers [first, end) of
// CudaEngineOptions, which also passes its activations on to the next share's engine. The split
// (cuda_split.cpp) runs the shares in device order each step, as one Engine.
#pragma once

#include <memory>

#include "engine/cuda_engine.hpp"
#include "engine/engine.hpp"
#include "format/container.hpp"

namespace codecllm::engine {

class CudaStage : public Engine {
 public:
  virtual int device() const = 0;
  // Where the share before writes this one's input activations (batch x hidden floats).
  virtual float* activations() = 0;
  // Each step then ends by copying the activations to `next` on `next_device` (a peer copy).
  // Set before the first step: the step is captured as a graph at its first run.
  virtual void send_to(float* next, int next_device) = 0;
};

// The engine of one device (options.device) over options' layers; make_cuda_engine's, as a share.
std::unique_ptr<CudaStage> make_cuda_stage(const format::ContainerReader& file, const CudaEngineOptions& options);

// A model split over options.devices (two or more).
std::unique_ptr<Engine> make_cuda_split(const format::ContainerReader& file, const CudaEngineOptions& options);

}  // namespace codecllm::engine
