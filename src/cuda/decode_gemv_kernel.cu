// Batch-1 matrix-vector products straight from compressed weights. Each warp decodes one rANS
// chunk exactly as the decode kernel does, and multiplies the weights with x as they come out
// of each group of steps: decoded weights never reach device memory, so a product reads the
// compressed bytes only (about two thirds of the 16-bit weights, half of int8 ones) instead
// of writing the weights and reading them back.
//
// Every row is summed in the order of cuda/gemv_dot.cuh, as the engine's GEMV kernel sums it,
// so both give the same bits. That order runs along the whole row in one warp, so a row is
// the work of the warp whose chunk holds its first element: when the row runs on into the
// next chunk, that warp decodes the next chunk's start as well, up to the row's end (the
// next chunk's own warp decodes those symbols too, without using them, and checks the chunk).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/cuda_check.hpp"
#include "cuda/decode_assemble.cuh"
#include "cuda/decode_desc.hpp"
#include "cuda/decode_launch.hpp"
#include "cuda/decode_stream.cuh"
#include "cuda/gemv_dot.cuh"
#include "cuda/pdl.cuh"

namespace codecllm::cuda {
namespace {

// Elements of a row that one round of the GEMV order covers: 32 lanes x one 16-byte vector.
template <Assemble A>
constexpr uint32_t kRoundElements = A == Assemble::Int8 ? 512 : 256;
template <Assemble A>
constexpr uint32_t kRoundsPerGroup = kGroupSymbols / kRoundElements<A>;

// A warp's running product: the row being summed, where in it the next round starts, and this
// lane's total so far.
struct RowSum {
  uint64_t row;
  uint32_t col;
  float acc;
};

// What one warp's rounds need, in registers.
template <Assemble A, typename T>
struct Product {
  const uint4* x;       // as 16-byte vectors of T
  void* y;              // the launch's y, of the type `out` names
  uint64_t y_row;       // where this tensor's row 0 is in y
  const float* scales;  // int8: the tensor's row scales
  uint64_t owned;       // first element of the first row this warp sums
  uint32_t cols;        // row length
  uint32_t lane;
  GemvOut out;

  // The weights of round `round` of the current group as this lane's 16-byte vector: from the
  // group's symbols in shared memory (and, for 16-bit weights, the raw sign-mantissa bytes).
  __device__ __forceinline__ uint4 weights(uint32_t symbols, uint32_t round, uint2 sign_mantissa) const {
    if constexpr (A == Assemble::Int8) {
      return lds16(symbols + 16 * lane);
    } else {
      const uint32_t at = symbols + round * kRoundElements<A> + 8 * lane;
      uint32_t hi, lo;
      split_halves(lds<4>(at), sign_mantissa.x, hi, lo);
      const uint2 a = interleave2(lo, hi);
      split_halves(lds<4>(at + 4), sign_mantissa.y, hi, lo);
      const uint2 b = interleave2(lo, hi);
      return make_uint4(a.x, a.y, b.x, b.y);
    }
  }

  // This lane's elements of x for a round at column col (int8: two vectors; else the first).
  // Plain loads: x was written by the kernel this one waited for.
  __device__ __forceinline__ void load_x(uint32_t col, uint4 (&xv)[2]) const {
    if constexpr (A == Assemble::Int8) {
      const uint32_t c = col / 16 + lane;
      xv[0] = x[2 * c];
      xv[1] = x[2 * c + 1];
    } else {
      xv[0] = x[col / 8 + lane];
    }
  }

  // Adds one round (element e of the tensor, at s.col of s.row; xv from load_x) and, at the
  // row's end, writes its y. Rows before `owned` belong to the previous chunk's warp: passed over.
  __device__ __forceinline__ void add_round(RowSum& s, uint64_t e, uint4 w, const uint4 (&xv)[2]) const {
    const bool mine = e >= owned;  // the same in every lane
    if (mine) {
      if constexpr (A == Assemble::Int8) {
        s.acc += dot_int8<T>(w, xv[0], xv[1]);
      } else {
        s.acc += dot16<T>(w, xv[0]);
      }
    }
    s.col += kRoundElements<A>;
    if (s.col == cols) {
      if (mine) {
        const float sum = warp_sum(s.acc);
        if (lane == 0) store_row(y, y_row + s.row, sum, A == Assemble::Int8 ? scales + s.row : nullptr, out);
      }
      s.acc = 0;
      s.col = 0;
      ++s.row;
    }
  }
};

// Decodes chunk `chunk` from its start and sums the products of its elements below `limit`
// (those of rows this warp owns). check: the whole chunk is decoded and its integrity checked.
template <Assemble A, bool kPacked, typename T>
__device__ __forceinline__ void decode_gemv_chunk(const TensorDesc& t, const uint8_t* comp, const Product<A, T>& prod,
                                                  uint32_t chunk, uint64_t limit, bool check, uint32_t ring,
                                                  uint32_t symbols, RowSum& sum, bool& bad) {
  const PlaneDesc& pd = t.planes[0];  // the coded plane: exponents, or the int8 values
  const uint32_t lane = prod.lane;
  const uint32_t lane_mask_lt = (1u << lane) - 1;
  const uint64_t first = uint64_t{chunk} * t.chunk_symbols;
  const uint64_t remaining = t.elements - first;
  const uint32_t n = remaining < t.chunk_symbols ? static_cast<uint32_t>(remaining) : t.chunk_symbols;
  const uint32_t used = static_cast<uint32_t>(min(uint64_t{n}, limit - first));  // symbols summed
  const uint32_t steps = ((check ? n : used) + 31) / 32;

  RingStream stream;
  LaneState coder;
  coder.x = open_chunk(pd, comp, chunk, ring, lane, stream);
  coder.table = settled(shared_address(smem + pd.table_offset));
  const uint32_t prob_bits = settled(pd.prob_bits), mask = (1u << prob_bits) - 1;
  if (coder.x < kRansL) bad = true;
  const uint8_t* sign_mantissa = comp + t.planes[1].payload;  // 16-bit weights only

  for (uint32_t g = 0; g < steps; g += kGroupSteps) {
    __syncwarp();  // every lane is done with the ring slots about to be refilled and the symbols
    issue_ahead(stream, lane);
    commit_segments();
    wait_segments_but(groups_in_flight(stream, kGroupMaxCodedBytes));
    __syncwarp();  // the segments copied by every lane are visible to the whole warp

    const uint64_t e0 = first + uint64_t{g} * 32;
    // What this lane's rounds read from global memory (raw sign-mantissa bytes, x), requested
    // before the steps so that the loads overlap them (after the barrier above, which would
    // wait for them).
    uint2 sm[kRoundsPerGroup<A>];
    uint4 xv[kRoundsPerGroup<A>][2];
#pragma unroll
    for (uint32_t r = 0; r < kRoundsPerGroup<A>; ++r) {
      const uint64_t e = e0 + r * kRoundElements<A>;
      sm[r] = make_uint2(0, 0);
      xv[r][0] = xv[r][1] = make_uint4(0, 0, 0, 0);
      if (e >= first + used || e < prod.owned) continue;
      if (A == Assemble::SplitBf16) sm[r] = __ldg(reinterpret_cast<const uint2*>(sign_mantissa + e) + lane);
      const uint32_t col = sum.col + r * kRoundElements<A>;  // rounds never straddle a row end
      prod.load_x(col < prod.cols ? col : col - prod.cols, xv[r]);
    }
    auto steps_of_group = [&](auto full) {
      constexpr bool kFull = decltype(full)::value;
#pragma unroll
      for (uint32_t k = 0; k < kGroupSteps; ++k) {
        const bool active = kFull || (g + k) * 32 + lane < n;
        const uint32_t symbol =
            rans_step<kPacked, true, kFull>(coder, stream, nullptr, prob_bits, mask, active, lane_mask_lt);
        sts8(symbols + k * 32 + lane, symbol);
      }
    };
    if ((g + kGroupSteps) * 32 <= n) {
      steps_of_group(std::true_type{});
    } else {
      steps_of_group(std::false_type{});
    }
    __syncwarp();  // the group's symbols are visible to the whole warp

#pragma unroll
    for (uint32_t r = 0; r < kRoundsPerGroup<A>; ++r) {
      const uint64_t e = e0 + r * kRoundElements<A>;
      if (e < first + used) prod.add_round(sum, e, prod.weights(symbols, r, sm[r]), xv[r]);
    }
  }
  wait_segments<0>();  // nothing may land in shared memory after the ring is reused or the warp exits
  if (check && !chunk_ok(coder.x, stream)) bad = true;
}

// One block: up to kWarpsPerBlock chunks of one tensor, one per warp. Tables in shared memory
// (the host only picks this kernel when they fit). Four blocks per SM (64 registers): the
// steps are latency-bound, and on the 8B shape four ran 8-11% faster than three.
template <Assemble A, bool kPacked, typename T>
__global__ void __launch_bounds__(kWarpsPerBlock * 32, 4)
    decode_gemv_kernel(const TensorDesc* __restrict__ tensors, const BlockJob* __restrict__ jobs,
                       const uint32_t* __restrict__ table_pool, const uint8_t* __restrict__ comp,
                       uint32_t* __restrict__ status, uint32_t table_bytes, const GemvArgs args) {
  const BlockJob job = jobs[blockIdx.x];
  const TensorDesc& t = tensors[job.tensor];
  stage_tables(t, table_pool, kPacked);
  __syncthreads();
  const uint32_t warp = threadIdx.x / 32;
  if (warp >= job.num_chunks) return;
  const uint32_t chunk = job.first_chunk + warp;
  const WarpBuffers buffers = warp_buffers(table_bytes, warp, 1);  // one coded plane

  wait_for_predecessor();  // x (and y, when accumulating) come from the kernels before; the tables did not
  const uint64_t cols = t.cols;
  const uint64_t first = uint64_t{chunk} * t.chunk_symbols;
  const uint64_t end = min(first + t.chunk_symbols, t.elements);
  const uint64_t owned = (first + cols - 1) / cols * cols;
  // Past this chunk's end when its last row runs on into the next chunk (never further: the
  // host requires rows no longer than a chunk).
  const uint64_t stop = owned < end ? min(t.elements, ((end - 1) / cols + 1) * cols) : end;
  const Product<A, T> prod{static_cast<const uint4*>(args.x),
                           args.y,
                           args.y_row[job.tensor],
                           reinterpret_cast<const float*>(comp + t.scales),
                           owned,
                           static_cast<uint32_t>(cols),
                           threadIdx.x % 32,
                           args.out};
  RowSum sum{first / cols, static_cast<uint32_t>(first % cols), 0.0f};
  bool bad = false;
  decode_gemv_chunk<A, kPacked, T>(t, comp, prod, chunk, end, true, buffers.rings, buffers.symbols, sum, bad);
  if (stop > end) {
    __syncwarp();
    decode_gemv_chunk<A, kPacked, T>(t, comp, prod, chunk + 1, stop, false, buffers.rings, buffers.symbols, sum, bad);
  }
  if (__any_sync(kFullMask, bad) && threadIdx.x % 32 == 0) atomicCAS(status + job.tensor, 0u, chunk + 1);
}

template <Assemble A, bool kPacked, typename T>
void launch_variant(const TensorDesc* tensors, const BlockJob* jobs, uint32_t num_jobs, const uint32_t* table_pool,
                    const uint8_t* comp, uint32_t* status, size_t table_bytes, const GemvArgs& args, bool overlap,
                    cudaStream_t stream) {
  table_bytes = table_bytes_in_block(table_bytes);
  const size_t shared_bytes = block_shared_bytes(table_bytes, 1);
  auto* kernel = decode_gemv_kernel<A, kPacked, T>;
  launch_kernel(kernel, dim3(num_jobs), dim3(kWarpsPerBlock * 32), shared_bytes, stream, overlap, tensors, jobs,
                table_pool, comp, status, static_cast<uint32_t>(table_bytes), args);
}

}  // namespace

void launch_decode_gemv(GemvKind kind, const TensorDesc* tensors, const BlockJob* jobs, uint32_t num_jobs,
                        const uint32_t* table_pool, const uint8_t* comp, uint32_t* status, size_t table_bytes,
                        const GemvArgs& args, bool overlap, cudaStream_t stream) {
  if (num_jobs == 0) return;
  const auto f = [&](auto kernel_launch) {
    kernel_launch(tensors, jobs, num_jobs, table_pool, comp, status, table_bytes, args, overlap, stream);
  };
  switch (kind) {
    case GemvKind::Bf16Packed:
      return f(launch_variant<Assemble::SplitBf16, true, __nv_bfloat16>);
    case GemvKind::Bf16Split:
      return f(launch_variant<Assemble::SplitBf16, false, __nv_bfloat16>);
    case GemvKind::Int8PackedXBf16:
      return f(launch_variant<Assemble::Int8, true, __nv_bfloat16>);
    case GemvKind::Int8SplitXBf16:
      return f(launch_variant<Assemble::Int8, false, __nv_bfloat16>);
    case GemvKind::Int8PackedXF16:
      return f(launch_variant<Assemble::Int8, true, __half>);
    case GemvKind::Int8SplitXF16:
      return f(launch_variant<Assemble::Int8, false, __half>);
  }
  throw Error("fused decode-GEMV: unknown kernel kind");
}

}  // namespace codecllm::cuda
