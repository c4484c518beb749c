// The tokenizer carried in a .cllm, whichever flavour it is.
#pragma once

#include <memory>

#include "format/container.hpp"
#include "model/tokenizer.hpp"

namespace codecllm::model {

// Prefers tokenizer.json, then tokenizer.model, then tokenizer.bin (vocab_size from the model
// config). Throws codecllm::Error naming the file when none is carried.
std::unique_ptr<Tokenizer> load_container_tokenizer(const format::ContainerReader& file, int vocab_size);

}  // namespace codecllm::model
