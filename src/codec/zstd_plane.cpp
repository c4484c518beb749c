#include "codec/zstd_plane.hpp"

#include <zstd.h>

#include <cstring>
#include <memory>
#include <string>

#include "codecllm/bytes.hpp"
#include "codecllm/error.hpp"

namespace codecllm::codec {
namespace {

struct CctxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DctxFree {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

[[noreturn]] void fail(const char* what, const std::string& why) {
  throw FormatError(std::string(what) + ": zstd plane: " + why);
}

uint64_t table_end(uint32_t num_chunks) { return sizeof(ZstdPlaneHeader) + 8 * uint64_t(num_chunks); }

}  // namespace

std::vector<uint8_t> zstd_encode(ByteSpan plane, const ZstdOptions& options) {
  const uint32_t chunk = options.chunk_bytes;
  if (chunk == 0 || chunk > kMaxZstdChunkBytes)
    throw Error("zstd chunk size must be 1.." + std::to_string(kMaxZstdChunkBytes));
  const uint64_t chunks = (plane.size() + chunk - 1) / chunk;
  if (chunks > UINT32_MAX) throw Error("zstd plane: too many chunks");
  std::unique_ptr<ZSTD_CCtx, CctxFree> cctx(ZSTD_createCCtx());
  if (!cctx) throw Error("zstd: out of memory");
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, options.level);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_contentSizeFlag, 1);

  std::vector<uint8_t> out(table_end(uint32_t(chunks)));
  const ZstdPlaneHeader h{kZstdMagic, chunk, plane.size(), uint32_t(chunks), 0};
  std::memcpy(out.data(), &h, sizeof h);
  for (uint64_t i = 0; i < chunks; ++i) {
    const uint64_t first = i * chunk;
    const size_t n = size_t(std::min<uint64_t>(chunk, plane.size() - first));
    const size_t begin = size_t(align_up(out.size(), kZstdFrameAlign));
    out.resize(begin + ZSTD_compressBound(n));
    const size_t r = ZSTD_compress2(cctx.get(), out.data() + begin, out.size() - begin, plane.data() + first, n);
    if (ZSTD_isError(r)) throw Error(std::string("zstd: ") + ZSTD_getErrorName(r));
    out.resize(begin + r);
    store_le64(out.data() + sizeof(ZstdPlaneHeader) + 8 * i, out.size());
  }
  return out;
}

ZstdPlaneHeader zstd_parse_header(ByteSpan payload, const char* what) {
  if (payload.size() < sizeof(ZstdPlaneHeader)) fail(what, "payload shorter than its header");
  ZstdPlaneHeader h;
  std::memcpy(&h, payload.data(), sizeof h);
  if (h.magic != kZstdMagic) fail(what, "bad magic");
  if (h.chunk_bytes == 0 || h.chunk_bytes > kMaxZstdChunkBytes) fail(what, "chunk size out of range");
  if (h.reserved != 0) fail(what, "reserved field not zero");
  if (h.num_chunks != (h.total_bytes + h.chunk_bytes - 1) / h.chunk_bytes)
    fail(what, "chunk count does not match size");
  const uint64_t end = table_end(h.num_chunks);
  if (end > payload.size()) fail(what, "frame table runs past the payload");
  uint64_t prev = end;
  for (uint32_t i = 0; i < h.num_chunks; ++i) {
    const uint64_t begin = align_up(prev, kZstdFrameAlign);
    const uint64_t frame_end = load_le64(payload.data() + sizeof h + 8 * uint64_t(i));
    if (frame_end <= begin || frame_end > payload.size())
      fail(what, "frame " + std::to_string(i) + " out of bounds or empty");
    prev = frame_end;
  }
  if (prev != payload.size()) fail(what, "bytes after the last frame");
  return h;
}

std::vector<ZstdFrame> zstd_frames(ByteSpan payload, const ZstdPlaneHeader& h) {
  std::vector<ZstdFrame> frames(h.num_chunks);
  uint64_t prev = table_end(h.num_chunks);
  for (uint32_t i = 0; i < h.num_chunks; ++i) {
    const uint64_t begin = align_up(prev, kZstdFrameAlign);
    const uint64_t end = load_le64(payload.data() + sizeof h + 8 * uint64_t(i));
    const uint64_t out = uint64_t(i) * h.chunk_bytes;
    frames[i] = {begin, end - begin, out, std::min<uint64_t>(h.chunk_bytes, h.total_bytes - out)};
    prev = end;
  }
  return frames;
}

void zstd_decode(ByteSpan payload, MutableByteSpan out, const char* what) {
  const ZstdPlaneHeader h = zstd_parse_header(payload, what);
  if (out.size() != h.total_bytes) fail(what, "decoded size does not match the plane");
  std::unique_ptr<ZSTD_DCtx, DctxFree> dctx(ZSTD_createDCtx());
  if (!dctx) throw Error("zstd: out of memory");
  const std::vector<ZstdFrame> frames = zstd_frames(payload, h);
  for (size_t i = 0; i < frames.size(); ++i) {
    const ZstdFrame& f = frames[i];
    const uint8_t* src = payload.data() + f.begin;
    // One whole frame, of exactly the chunk's size (so that nvCOMP, which is told these sizes,
    // sees the same frames libzstd accepted).
    if (ZSTD_findFrameCompressedSize(src, f.size) != f.size)
      fail(what, "chunk " + std::to_string(i) + " is not one frame");
    if (ZSTD_getFrameContentSize(src, f.size) != f.out_size)
      fail(what, "chunk " + std::to_string(i) + " frame does not declare its chunk's size");
    const size_t r = ZSTD_decompressDCtx(dctx.get(), out.data() + f.out, f.out_size, src, f.size);
    if (ZSTD_isError(r) || r != f.out_size)
      fail(what, "chunk " + std::to_string(i) + ": " + (ZSTD_isError(r) ? ZSTD_getErrorName(r) : "short frame"));
  }
}

}  // namespace codecllm::codec
