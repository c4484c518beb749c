"""device_map and max_memory: their parsing in transformers' conventions, the engine's multi-device planner as
load_model's device_map="auto" calls it, and which device each part of a model goes to. Runs on the CPU (the
planner is arithmetic on byte counts); loading a split model needs several GPUs."""

import codecllm
import pytest
import torch
from codecllm import _device_map as dm
from codecllm._model import _find_blocks
from conftest import ARCHITECTURES, transformers

GIB = 1 << 30


def test_memory_sizes_and_devices_parse_as_accelerate_writes_them():
    assert dm.parse_bytes("20GiB") == 20 * GIB
    assert dm.parse_bytes("80GB") == 80 * 10**9
    assert dm.parse_bytes("512 MiB") == 512 << 20
    assert dm.parse_bytes(1234) == 1234
    for bad in ("twenty", "20 parsecs", -1):
        with pytest.raises(ValueError):
            dm.parse_bytes(bad)
    assert [dm.device_index(d) for d in (0, "1", "cuda:2", torch.device("cuda", 3))] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="CUDA devices only"):
        dm.device_index("cpu")


def test_a_device_map_dict_is_read_by_longest_prefix():
    where = dm.assign(
        {"": 1, "model.layers.0": 0, "model.layers.1": "cuda:0"}, ["model.layers.0.mlp", "model.layers.10", "lm_head"]
    )
    assert where == {"model.layers.0.mlp": 0, "model.layers.10": 1, "lm_head": 1}
    with pytest.raises(ValueError, match="places no device for lm_head"):
        dm.assign({"model": 0}, ["model.norm", "lm_head"])


def test_auto_plans_contiguous_ranges_in_proportion_to_the_budgets():
    layers = [(100 << 20, 66 << 20, 1 << 16)] * 8  # decoded, compressed, decoder tables
    block_device, per_device, text = dm.plan_auto(layers, {0: 300 << 20, 1: 600 << 20}, 0, 0, "gpu", 2, 2)
    assert [block_device[b] for b in range(8)] == [0] * 3 + [1] * 5
    assert per_device[0][0] == ["gpu"] * 3 and per_device[1][0] == ["gpu"] * 5
    assert "cuda:0: layers 0-2" in text and "cuda:1: layers 3-7" in text
    # auto: each device's fastest mix within its budget; too small a budget is named with its numbers
    _, per_device, _ = dm.plan_auto(layers, {0: 300 << 20, 1: 300 << 20}, 50 << 20, 50 << 20, "auto", 2, 2)
    assert all(set(names) <= {"gpu", "gpu-compressed", "host"} for names, _ in per_device.values())
    assert any("gpu" != n for names, _ in per_device.values() for n in names)
    with pytest.raises(RuntimeError, match=r"device_map='auto': device 1 \(layers"):
        dm.plan_auto(layers, {0: 2 * GIB, 1: 1 << 20}, 0, 0, "gpu", 2, 2)


def meta_model(name):
    config_class, model_class, settings, _ = ARCHITECTURES[name]
    with torch.device("meta"):
        return getattr(transformers, model_class)(getattr(transformers, config_class)(**settings))


def test_split_puts_blocks_and_the_rest_where_the_map_says():
    model = meta_model("llama-wide")  # 8 blocks
    blocks = _find_blocks(model)
    split = dm.Split(model, blocks, torch.device("cuda", 0), {"model.layers": 0, "": 1})
    assert split.devices == [0, 1] and set(split.block_device.values()) == {0}
    assert split.device_of("model.layers.3.mlp.up_proj.weight") == 0
    assert split.device_of("lm_head.weight") == 1 and split.device_of("model.norm.weight") == 1
    # auto, once planned: modules with parameters before the blocks on the first device, after them on the last,
    # modules holding only buffers (the rotary tables) on the first
    split = dm.Split(model, blocks, torch.device("cuda", 0), "auto")
    split.block_device = {b: 0 if b < 3 else 2 for b in range(8)}
    split._refresh()
    assert split.devices == [0, 2]
    assert split.device_of("model.embed_tokens.weight") == 0
    assert split.device_of("model.layers.5.input_layernorm.weight") == 2
    assert split.device_of("model.norm.weight") == 2 and split.device_of("lm_head.weight") == 2
    assert split.device_of("model.rotary_emb.inv_freq") == 0
    assert split.hf_device_map()["model.layers.2"] == 0 and split.hf_device_map()["model.layers.3"] == 2


def test_device_map_needs_cuda(saved):
    _, lossless, _ = saved("llama")
    with pytest.raises(ValueError, match="device_map places modules on CUDA devices"):
        codecllm.load_model(lossless, device="cpu", device_map="auto")


# ---------------------------------------------------------------------------------------------
# GPU: a model split by a device_map gives the bits of the same model on one device


def cuda_ready():
    return torch.cuda.is_available() and codecllm._native.has_cuda


@pytest.mark.skipif(not cuda_ready(), reason="needs a CUDA device and a CUDA build of codecllm")
@pytest.mark.parametrize("placement", ["gpu", "gpu-compressed", "host", "auto"])
def test_cuda_device_map_gives_the_bits_of_one_device(saved, placement):
    """device_map="auto" over every visible GPU (one GPU: the planner's code path on one device) and, with two or
    more, the blocks split across them: logits bit-identical to transformers' model on one device, generate() the
    same tokens."""
    from conftest import outputs, reference

    src, lossless, _ = saved("llama-wide")
    ref = reference("llama-wide", src, device="cuda")
    ids = torch.randint(3, 96, (1, 12), generator=torch.Generator().manual_seed(7)).cuda()
    expected = outputs(ref, ids).cpu()
    gpus = min(torch.cuda.device_count(), 2)
    budget = {d: "1GiB" for d in range(gpus)}
    model = codecllm.load_model(lossless, placement=placement, device_map="auto", max_memory=budget)
    for _ in range(2):
        assert torch.equal(outputs(model, ids).cpu(), expected)
    if gpus > 1:
        assert set(model.hf_device_map.values()) >= {0, 1}
        assert len(model.codecllm_memory()["per_device"]) == 2
    got = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert torch.equal(got.cpu(), ref.generate(ids, max_new_tokens=8, do_sample=False).cpu())
