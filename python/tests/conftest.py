"""Tiny random models of several architectures, saved as Hugging Face directories and compressed."""

import os

import pytest
import torch

transformers = pytest.importorskip("transformers")
codecllm = pytest.importorskip("codecllm")

VOCAB = 96
COMMON = {"vocab_size": VOCAB, "max_position_embeddings": 128}
LLAMA_LIKE = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, **COMMON
)

# name: (config class, model class, settings, causal)
ARCHITECTURES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(attention_bias=True, **LLAMA_LIKE), True),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(tie_word_embeddings=True, **LLAMA_LIKE), True),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(sliding_window=None, **LLAMA_LIKE), True),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(pad_token_id=0, **LLAMA_LIKE), True),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", dict(head_dim=16, **LLAMA_LIKE), True),
    "gpt2": (
        "GPT2Config",
        "GPT2LMHeadModel",
        {"n_embd": 64, "n_layer": 3, "n_head": 4, "n_positions": 128, "vocab_size": VOCAB},
        True,
    ),
    # Wider and deeper, so that compressing blocks saves more than a decode slot costs (the auto test).
    "llama-wide": (
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(LLAMA_LIKE, hidden_size=256, intermediate_size=1024, num_hidden_layers=8),
        True,
    ),
    "bert": (
        "BertConfig",
        "BertModel",
        dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, **COMMON),
        False,
    ),
}


def save_tokenizer(directory):
    """A word-level tokenizer over VOCAB ids (enough for pipeline() to run), saved next to the model."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"w{i}": i for i in range(3, VOCAB)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<unk>"
    )
    fast.save_pretrained(directory)


def make_model(name, dtype=torch.bfloat16, seed=0):
    config_class, model_class, settings, _ = ARCHITECTURES[name]
    torch.manual_seed(seed)
    config = getattr(transformers, config_class)(**settings)
    model = getattr(transformers, model_class)(config).to(dtype).eval()
    with torch.no_grad():  # norms and biases off their initial ones and zeros, so that they count
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="session")
def saved(tmp_path_factory):
    """name -> (directory, lossless .cllm, int8 .cllm), made once per session."""
    cache = {}

    def get(name):
        if name not in cache:
            d = tmp_path_factory.mktemp(name)
            src = d / "hf"
            make_model(name).save_pretrained(src)
            save_tokenizer(src)
            lossless, int8 = d / "lossless.cllm", d / "int8.cllm"
            codecllm.compress(src, lossless, progress=False)
            codecllm.compress(src, int8, mode="int8", progress=False)
            cache[name] = (src, lossless, int8)
        return cache[name]

    return get


def reference(name, directory, device="cpu", dtype=torch.bfloat16):
    """The same model as transformers loads it from the original checkpoint."""
    cls = getattr(transformers, ARCHITECTURES[name][1])
    try:
        model = cls.from_pretrained(directory, dtype=dtype)
    except TypeError:  # transformers 4 spells it torch_dtype
        model = cls.from_pretrained(directory, torch_dtype=dtype)
    return model.to(device).eval()


def outputs(model, ids):
    with torch.no_grad():
        out = model(ids)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def cuda_ready():
    return torch.cuda.is_available() and codecllm._native.has_cuda


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
