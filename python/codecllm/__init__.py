"""CodecLLM: run Hugging Face models from entropy-compressed weights.

    import codecllm
    codecllm.compress("path/to/hf-model", "model.cllm")              # lossless, or mode="int8"
    model = codecllm.load_model("model.cllm", device="cuda", placement="gpu-compressed")
    tokenizer = codecllm.load_tokenizer("model.cllm")
    out = model.generate(**tokenizer("def fib(n):", return_tensors="pt").to("cuda"), max_new_tokens=32)

Weights stay compressed (in VRAM, or in pinned host RAM) and each decoder block's linear
weights are decoded on the GPU into a reused scratch slot just before the block runs, while
the next blocks decode on side streams.
"""

# torch before the native core: loaded the other way round (the core linking nvCOMP first), the
# process aborted at start-up on the H200 machine ("free(): invalid pointer").
import torch  # noqa: F401

from ._compress import CompressSummary, compress, decompress
from ._file import CllmFile, TensorInfo
from ._file import open_cllm as open
from ._model import load_model, load_tokenizer

__version__ = "0.1.0"

__all__ = [
    "CllmFile",
    "CompressSummary",
    "TensorInfo",
    "compress",
    "decompress",
    "load_model",
    "load_tokenizer",
    "open",
]
