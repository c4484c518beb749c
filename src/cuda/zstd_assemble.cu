// The element-wise kernels of the zstd path: each frame's pointers for nvCOMP, and the planes
// nvCOMP decoded (with any raw ones) put back together through the decoders' own element
// assembly (decode_assemble.cuh), so that both coders give the same bits.
#include <algorithm>

#include "cuda/cuda_check.hpp"
#include "cuda/decode_assemble.cuh"
#include "cuda/zstd_batch.hpp"

namespace codecllm::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void zstd_pointers_kernel(const ZstdFrameJob* frames, size_t n, const uint8_t* comp, uint8_t* scratch,
                                     const void** comp_ptrs, void** out_ptrs) {
  const size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  comp_ptrs[i] = comp + frames[i].comp;
  out_ptrs[i] = scratch + frames[i].out;
}

struct Planes {
  const uint8_t* p[kMaxPlanes];
};

template <Assemble A, int NP>
__global__ void assemble_kernel(Planes planes, const float* scales, uint64_t elements, uint64_t cols, bool narrow,
                                Int8Out int8_out, uint8_t* out) {
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < elements;
       i += uint64_t(gridDim.x) * blockDim.x) {
    uint32_t b[NP];
#pragma unroll
    for (int k = 0; k < NP; ++k) b[k] = planes.p[k][i];
    Int8Store q{int8_out == Int8Out::Int8, int8_out, A == Assemble::Int8 && scales != nullptr ? scales[i / cols] : 0.f};
    // store_element indexes in 32 bits: point `out` at this element's block of 2^20 instead.
    const uint64_t base = i & ~uint64_t{0xFFFFF};
    const uint32_t bytes = output_element_bytes<A, NP>(narrow, q.keep_bytes);
    store_element<A, NP>(out + base * bytes, uint32_t(i - base), b, narrow, q);
  }
}

template <Assemble A, int NP>
void launch(const PlaneAssembly& a, const uint8_t* const* planes, const float* scales, void* out, cudaStream_t s) {
  Planes p{};
  for (int k = 0; k < NP; ++k) p.p[k] = planes[k];
  const uint64_t blocks = std::min<uint64_t>((a.elements + kThreads - 1) / kThreads, 65535);
  assemble_kernel<A, NP><<<unsigned(std::max<uint64_t>(blocks, 1)), kThreads, 0, s>>>(
      p, scales, a.elements, std::max<uint64_t>(a.cols, 1), a.narrow_to_bf16, a.int8_out, static_cast<uint8_t*>(out));
  CLLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void launch_zstd_pointers(const ZstdFrameJob* frames, size_t n, const uint8_t* comp, uint8_t* scratch,
                          const void** comp_ptrs, void** out_ptrs, cudaStream_t stream) {
  if (n == 0) return;
  zstd_pointers_kernel<<<unsigned((n + kThreads - 1) / kThreads), kThreads, 0, stream>>>(frames, n, comp, scratch,
                                                                                         comp_ptrs, out_ptrs);
  CLLM_CUDA_CHECK(cudaGetLastError());
}

void assemble_planes(const PlaneAssembly& a, const uint8_t* const* planes, const float* scales, void* out,
                     cudaStream_t stream) {
  if (a.elements == 0) return;
  switch (a.assemble) {
    case Assemble::SplitBf16:
      return launch<Assemble::SplitBf16, 2>(a, planes, scales, out, stream);
    case Assemble::SplitF32:
      return launch<Assemble::SplitF32, 4>(a, planes, scales, out, stream);
    case Assemble::Int8:
      return launch<Assemble::Int8, 1>(a, planes, scales, out, stream);
    case Assemble::Bytes:
      switch (a.num_planes) {
        case 1:
          return launch<Assemble::Bytes, 1>(a, planes, scales, out, stream);
        case 2:
          return launch<Assemble::Bytes, 2>(a, planes, scales, out, stream);
        case 4:
          return launch<Assemble::Bytes, 4>(a, planes, scales, out, stream);
        case 8:
          return launch<Assemble::Bytes, 8>(a, planes, scales, out, stream);
        default:
          break;
      }
  }
  throw Error("zstd planes: no element assembly for this layout");
}

}  // namespace codecllm::cuda
