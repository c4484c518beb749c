// The C API over GpuDecoder: exceptions become status codes plus a thread-local message.
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "codecllm/codecllm.h"
#include "codecllm/error.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/gpu_decoder.hpp"
#include "format/container.hpp"

struct cllm_file {
  std::unique_ptr<codecllm::format::ContainerReader> reader;
};

struct cllm_decoder {
  std::unique_ptr<codecllm::cuda::GpuDecoder> decoder;
};

namespace {

thread_local std::string g_last_error;

template <typename Fn>
cllm_status guarded(Fn&& fn) {
  try {
    g_last_error.clear();
    fn();
    return CLLM_OK;
  } catch (const codecllm::cuda::CudaError& e) {
    g_last_error = e.what();
    return CLLM_ERR_CUDA;
  } catch (const codecllm::FormatError& e) {
    g_last_error = e.what();
    return CLLM_ERR_FORMAT;
  } catch (const codecllm::IoError& e) {
    g_last_error = e.what();
    return CLLM_ERR_IO;
  } catch (const codecllm::Error& e) {
    g_last_error = e.what();
    return CLLM_ERR_ARGUMENT;
  } catch (const std::bad_alloc&) {
    g_last_error = "out of host memory";
    return CLLM_ERR_INTERNAL;
  } catch (const std::exception& e) {
    g_last_error = e.what();
    return CLLM_ERR_INTERNAL;
  }
}

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

void require(bool ok, const char* what) {
  if (!ok) throw codecllm::Error(what);
}

}  // namespace

extern "C" {

const char* cllm_last_error(void) { return g_last_error.c_str(); }

cllm_status cllm_open(const char* path, cllm_file** out) {
  return guarded([&] {
    require(path != nullptr && out != nullptr, "cllm_open: path and out must not be NULL");
    auto f = std::make_unique<cllm_file>();
    f->reader = std::make_unique<codecllm::format::ContainerReader>(path);
    *out = f.release();
  });
}

void cllm_close(cllm_file* file) { delete file; }

int64_t cllm_num_tensors(const cllm_file* file) {
  return file == nullptr ? 0 : static_cast<int64_t>(file->reader->index().tensors.size());
}

const char* cllm_tensor_name(const cllm_file* file, int64_t i) {
  if (file == nullptr || i < 0 || i >= cllm_num_tensors(file)) return nullptr;
  return file->reader->index().tensors[static_cast<size_t>(i)].name.c_str();
}

cllm_status cllm_decoder_create(const cllm_file* file, const char* const* names, size_t count,
                                cllm_int8_output int8_output, cllm_decoder** out) {
  return guarded([&] {
    require(file != nullptr && out != nullptr && (names != nullptr || count == 0),
            "cllm_decoder_create: file, names and out must not be NULL");
    std::vector<std::string> list;
    for (size_t i = 0; i < count; ++i) {
      require(names[i] != nullptr, "cllm_decoder_create: a tensor name is NULL");
      list.emplace_back(names[i]);
    }
    codecllm::cuda::DecoderOptions o;
    o.int8_output = int8_output == CLLM_INT8_RAW      ? codecllm::cuda::Int8Out::Int8
                    : int8_output == CLLM_INT8_AS_F16 ? codecllm::cuda::Int8Out::F16
                                                      : codecllm::cuda::Int8Out::Bf16;
    auto d = std::make_unique<cllm_decoder>();
    d->decoder = std::make_unique<codecllm::cuda::GpuDecoder>(*file->reader, list, o);
    *out = d.release();
  });
}

void cllm_decoder_destroy(cllm_decoder* decoder) { delete decoder; }

uint64_t cllm_decoder_output_bytes(const cllm_decoder* decoder, size_t i) {
  if (decoder == nullptr || i >= decoder->decoder->num_tensors()) return 0;
  return decoder->decoder->output_bytes(i);
}

uint64_t cllm_decoder_compressed_bytes(const cllm_decoder* decoder) {
  return decoder == nullptr ? 0 : decoder->decoder->range_bytes();
}

uint64_t cllm_decoder_device_bytes(const cllm_decoder* decoder) {
  return decoder == nullptr ? 0 : decoder->decoder->device_bytes();
}

cllm_status cllm_decoder_upload(cllm_decoder* decoder, void* stream) {
  return guarded([&] {
    require(decoder != nullptr, "cllm_decoder_upload: decoder is NULL");
    decoder->decoder->upload_resident(as_stream(stream));
  });
}

cllm_status cllm_decode(cllm_decoder* decoder, void* const* outputs, void* stream) {
  return guarded([&] {
    require(decoder != nullptr && outputs != nullptr, "cllm_decode: decoder and outputs must not be NULL");
    require(decoder->decoder->resident() != nullptr || decoder->decoder->range_bytes() == 0,
            "cllm_decode: call cllm_decoder_upload first (or use cllm_decode_from_host)");
    decoder->decoder->decode(decoder->decoder->resident(), outputs, as_stream(stream));
  });
}

cllm_status cllm_decode_from_host(cllm_decoder* decoder, const void* compressed_host, void* const* outputs,
                                  void* stream) {
  return guarded([&] {
    require(decoder != nullptr && outputs != nullptr, "cllm_decode_from_host: decoder and outputs must not be NULL");
    const void* src = compressed_host != nullptr ? compressed_host : decoder->decoder->host_range().data();
    decoder->decoder->decode_from_host(static_cast<const uint8_t*>(src), outputs, as_stream(stream));
  });
}

cllm_status cllm_decoder_check(cllm_decoder* decoder, void* stream) {
  return guarded([&] {
    require(decoder != nullptr, "cllm_decoder_check: decoder is NULL");
    decoder->decoder->check(as_stream(stream));
  });
}

}  // extern "C"
