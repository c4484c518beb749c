// Conversion of llama2.c checkpoints into Hugging Face directories, so that tools which
// only read Hugging Face layouts (transformers, the reference comparisons) can load them.
#pragma once

#include <string>

namespace codecllm::model {

// Writes config.json, model.safetensors (F32, wq/wk in rotate-half order) and, when one is
// found next to the .bin, tokenizer.bin into out_dir, creating it if needed. Each file
// appears only once complete.
void convert_llama2c_to_hf(const std::string& bin_path, const std::string& out_dir);

}  // namespace codecllm::model
