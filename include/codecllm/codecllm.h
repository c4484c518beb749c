/* codecllm.h: the stable C API for decoding .cllm weights on the GPU.
 *
 * Opaque handles, status codes, and a thread-local message for the last failure. Streams are
 * passed as void* (a cudaStream_t; NULL is the default stream) so that C programs and Python's
 * ctypes can call it without CUDA headers. Nothing here decodes on the host: decoders move
 * compressed bytes to the device and decode them there.
 *
 * Example (error checks shortened):
 *
 *   cllm_file* f;
 *   if (cllm_open("model.cllm", &f) != CLLM_OK) { fprintf(stderr, "%s\n", cllm_last_error()); return 1; }
 *   const char* names[] = {"model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight"};
 *   cllm_decoder* d;
 *   cllm_decoder_create(f, names, 2, CLLM_INT8_AS_BF16, &d);
 *   void* out[2];
 *   for (int i = 0; i < 2; ++i) cudaMalloc(&out[i], cllm_decoder_output_bytes(d, i));
 *   cllm_decoder_upload(d, stream);          // compressed bytes stay resident in VRAM
 *   cllm_decode(d, out, stream);             // enqueued: no synchronization
 *   if (cllm_decoder_check(d, stream) != CLLM_OK) fprintf(stderr, "%s\n", cllm_last_error());
 *   cllm_decoder_destroy(d);
 *   cllm_close(f);
 */
#ifndef CODECLLM_H_
#define CODECLLM_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cllm_status {
  CLLM_OK = 0,
  CLLM_ERR_ARGUMENT = 1, /* a NULL handle, an unknown tensor name, an index out of range */
  CLLM_ERR_IO = 2,       /* the file cannot be opened or mapped */
  CLLM_ERR_FORMAT = 3,   /* the file is not a valid .cllm, or a checksum or integrity check failed */
  CLLM_ERR_CUDA = 4,     /* a CUDA call failed (no device, out of device memory, ...) */
  CLLM_ERR_INTERNAL = 5
} cllm_status;

typedef enum cllm_int8_output {
  CLLM_INT8_AS_BF16 = 0, /* int8-mode tensors are dequantized to bfloat16 */
  CLLM_INT8_AS_F16 = 1,  /* ... to float16 */
  CLLM_INT8_RAW = 2      /* ... left as int8 values (scales: see the index) */
} cllm_int8_output;

typedef struct cllm_file cllm_file;
typedef struct cllm_decoder cllm_decoder;

/* Message describing the last failure on this thread ("" if none). */
const char* cllm_last_error(void);

cllm_status cllm_open(const char* path, cllm_file** out);
void cllm_close(cllm_file* file);
int64_t cllm_num_tensors(const cllm_file* file);
/* Name of tensor i (valid while the file is open), or NULL. */
const char* cllm_tensor_name(const cllm_file* file, int64_t i);

/* Plans the decode of `count` tensors in one launch. Allocates every device buffer it needs. */
cllm_status cllm_decoder_create(const cllm_file* file, const char* const* names, size_t count,
                                cllm_int8_output int8_output, cllm_decoder** out);
void cllm_decoder_destroy(cllm_decoder* decoder);
/* Bytes the decoder writes for tensor i; 0 if i is out of range. */
uint64_t cllm_decoder_output_bytes(const cllm_decoder* decoder, size_t i);
/* Size of the compressed input (one contiguous range of the file). */
uint64_t cllm_decoder_compressed_bytes(const cllm_decoder* decoder);
/* Device memory the decoder holds (tables, descriptors, scratch, resident copy). */
uint64_t cllm_decoder_device_bytes(const cllm_decoder* decoder);

/* Copies the compressed input into device memory owned by the decoder (async on stream). */
cllm_status cllm_decoder_upload(cllm_decoder* decoder, void* stream);
/* Decodes from the resident copy into outputs[i] (device pointers). Async. */
cllm_status cllm_decode(cllm_decoder* decoder, void* const* outputs, void* stream);
/* Copies the compressed input from host memory (pinned for overlap), then decodes. Async. */
cllm_status cllm_decode_from_host(cllm_decoder* decoder, const void* compressed_host, void* const* outputs,
                                  void* stream);
/* Waits for stream and reports a failed integrity check as CLLM_ERR_FORMAT. */
cllm_status cllm_decoder_check(cllm_decoder* decoder, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* CODECLLM_H_ */
