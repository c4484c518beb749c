/* Decodes every tensor of a .cllm file on the GPU through the C API, from a resident device
 * copy of the compressed bytes, and prints what it produced. Built with a C compiler in CI.
 *
 *   c_api_decode model.cllm
 */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#include "codecllm/codecllm.h"

static int fail(const char* what) {
  fprintf(stderr, "c_api_decode: %s: %s\n", what, cllm_last_error());
  return 1;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s FILE.cllm\n", argv[0]);
    return 2;
  }
  cllm_file* file = NULL;
  if (cllm_open(argv[1], &file) != CLLM_OK) return fail("open");
  int64_t n = cllm_num_tensors(file);
  uint64_t total = 0;
  for (int64_t i = 0; i < n; ++i) {
    /* One tensor per decoder here for brevity; real callers pass a whole layer at once. */
    const char* name = cllm_tensor_name(file, i);
    cllm_decoder* dec = NULL;
    if (cllm_decoder_create(file, &name, 1, CLLM_INT8_AS_BF16, &dec) != CLLM_OK) return fail(name);
    void* out = NULL;
    uint64_t bytes = cllm_decoder_output_bytes(dec, 0);
    if (cudaMalloc(&out, bytes ? bytes : 1) != cudaSuccess) {
      fprintf(stderr, "c_api_decode: cudaMalloc of %llu bytes failed\n", (unsigned long long)bytes);
      return 1;
    }
    if (cllm_decoder_upload(dec, NULL) != CLLM_OK) return fail("upload");
    if (cllm_decode(dec, &out, NULL) != CLLM_OK) return fail("decode");
    if (cllm_decoder_check(dec, NULL) != CLLM_OK) return fail(name);
    printf("%-60s %12llu compressed -> %12llu bytes\n", name, (unsigned long long)cllm_decoder_compressed_bytes(dec),
           (unsigned long long)bytes);
    total += bytes;
    cudaFree(out);
    cllm_decoder_destroy(dec);
  }
  printf("decoded %lld tensors, %llu bytes, on the GPU\n", (long long)n, (unsigned long long)total);
  cllm_close(file);
  return 0;
}
