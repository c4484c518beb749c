#!/usr/bin/env python3
"""Checks the engines' logits against transformers on random tiny models.

For each case a tiny model is created in float32 with random weights (norm weights and
biases perturbed too, since transformers initializes them to ones and zeros), saved with
save_pretrained, and run by both transformers and tests/engine_logits, which compresses the
directory to a .cllm and runs the CPU engine. Every position's logits must agree to within
1e-3 of the logit scale (max |logit|).

Where torch sees a GPU and engine_logits was built with CUDA, each case also runs in BF16:
transformers on the GPU against the CUDA engine in placements gpu and gpu-compressed, to
within 5e-2 of the logit scale (both compute in BF16, in different orders).

Exits 0 when every case agrees, 1 when one does not, 77 (CTest's skip) when torch,
transformers or safetensors are not installed.

    python3 scripts/check_against_transformers.py --engine-logits build/tests/engine_logits
"""

import argparse
import json
import subprocess
import sys
import tempfile

try:
    import safetensors  # noqa: F401  (save_pretrained needs it)
    import torch
    import transformers
except ImportError as e:
    print(f"skipped: {e}")
    sys.exit(77)

transformers.utils.logging.disable_progress_bar()

TOLERANCE = 1e-3
CUDA_TOLERANCE = 5e-2
CUDA_PLACEMENTS = ("gpu", "gpu-compressed")
SEQ_LEN = 24

COMMON = {
    "vocab_size": 128,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
    "rms_norm_eps": 1e-5,
    "initializer_range": 0.1,
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def rope(theta, scaling=None):
    """RoPE settings in the layout of the installed transformers (5 moved them)."""
    if int(transformers.__version__.split(".")[0]) >= 5:
        return {"rope_parameters": {"rope_type": "default", "rope_theta": theta, **(scaling or {})}}
    return {"rope_theta": theta, "rope_scaling": scaling}


LLAMA3 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    # small, so that the 8 frequency pairs fall in all three llama3 bands
    "original_max_position_embeddings": 64,
}

# name, config class, model class, settings on top of COMMON
CASES = [
    ("llama-gqa", "LlamaConfig", "LlamaForCausalLM", rope(10000.0)),
    (
        "llama-bias-tied",
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(attention_bias=True, tie_word_embeddings=True, num_key_value_heads=4, **rope(10000.0)),
    ),
    ("llama3-rope", "LlamaConfig", "LlamaForCausalLM", dict(rope(500000.0, LLAMA3), num_key_value_heads=1)),
    (
        "qwen2-bias-tied",
        "Qwen2Config",
        "Qwen2ForCausalLM",
        dict(tie_word_embeddings=True, use_sliding_window=False, **rope(1000000.0)),
    ),
    (
        "mistral-head-dim",
        "MistralConfig",
        "MistralForCausalLM",
        dict(sliding_window=None, head_dim=32, **rope(10000.0)),
    ),
]


def make_model(config_class, model_class, settings, seed):
    torch.manual_seed(seed)
    config = getattr(transformers, config_class)(**{**COMMON, **settings})
    config._attn_implementation = "eager"
    model = getattr(transformers, model_class)(config).to(torch.float32).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return model


def compare(name, expected, run, tolerance):
    """Prints one line for one engine run; returns whether it agreed."""
    if run.returncode != 0:
        print(f"{name}: engine_logits failed: {run.stderr.strip()}")
        return False
    got = torch.tensor(json.loads(run.stdout)["logits"], dtype=torch.float32)
    if got.shape != expected.shape:
        print(f"{name}: engine logits have shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
        return False
    diff = (got - expected).abs().max().item()
    scale = expected.abs().max().item()
    ok = diff <= tolerance * scale
    print(
        f"{name}: max |diff| {diff:.3g}, logit scale {scale:.3g}, ratio {diff / scale:.3g} {'ok' if ok else 'FAILED'}"
    )
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine-logits", required=True, help="path of the engine_logits executable")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    checks = failures = 0
    for seed, (name, config_class, model_class, settings) in enumerate(CASES):
        model = make_model(config_class, model_class, settings, seed)
        ids = [1] + torch.randint(
            3, COMMON["vocab_size"], (SEQ_LEN - 1,), generator=torch.Generator().manual_seed(seed)
        ).tolist()
        with torch.no_grad():
            expected = model(torch.tensor([ids])).logits[0]
        runs = []
        with tempfile.TemporaryDirectory() as d:
            model.save_pretrained(d)
            command = [args.engine_logits, d, "--ids", ",".join(map(str, ids))]
            runs.append(
                (name, expected, subprocess.run(command, capture_output=True, text=True, check=False), TOLERANCE)
            )
        if cuda:
            bf16 = model.to(torch.bfloat16)
            with torch.no_grad():
                expected = bf16.to("cuda")(torch.tensor([ids], device="cuda")).logits[0].float().cpu()
            with tempfile.TemporaryDirectory() as d:
                bf16.to("cpu").save_pretrained(d)
                for placement in CUDA_PLACEMENTS:
                    run = subprocess.run(
                        command[:1] + [d] + command[2:] + ["--cuda", placement],
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                    if "no CUDA support" in run.stderr:
                        break
                    runs.append((f"{name} bf16 cuda {placement}", expected, run, CUDA_TOLERANCE))
        for what, reference, run, tolerance in runs:
            checks += 1
            failures += not compare(what, reference, run, tolerance)
    print(f"{checks - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
