"""load_model against transformers on tiny random models of several architectures: the same logits,
bit for bit, from the original checkpoint and from the .cllm (CPU here; the GPU placements where a
GPU is present)."""

import codecllm
import pytest
import torch
from conftest import ARCHITECTURES, cuda_ready, outputs, reference

NAMES = [n for n in ARCHITECTURES if n != "llama-wide"]


def ids_for(seed=0, length=12):
    return torch.randint(3, 96, (1, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", NAMES)
def test_cpu_lossless_is_bit_identical(saved, name):
    src, lossless, _ = saved(name)
    ref = reference(name, src)
    model = codecllm.load_model(lossless, device="cpu")
    assert type(model) is type(ref)
    ids = ids_for()
    assert torch.equal(outputs(model, ids), outputs(ref, ids))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cpu_other_float_types_are_bit_identical(tmp_path, dtype):
    """Checkpoints saved in float32 or float16 load in that type by default, bit for bit."""
    from conftest import make_model

    src = tmp_path / "hf"
    make_model("qwen2", dtype=dtype, seed=7).save_pretrained(src)
    codecllm.compress(src, tmp_path / "m.cllm", progress=False)
    model = codecllm.load_model(tmp_path / "m.cllm", device="cpu")
    assert model.dtype == dtype
    ids = ids_for(6)
    assert torch.equal(outputs(model, ids), outputs(reference("qwen2", src, dtype=dtype), ids))


@pytest.mark.parametrize("name", ["llama", "gpt2", "bert"])
def test_cpu_int8_equals_its_dequantized_weights(saved, tmp_path, name):
    """int8 weights are used as q * scale: exactly what decompress writes out."""
    src, _lossless, int8 = saved(name)
    codecllm.decompress(int8, tmp_path / "dequantized")
    ref = reference(name, tmp_path / "dequantized")
    model = codecllm.load_model(int8, device="cpu")
    ids = ids_for(1)
    got = outputs(model, ids)
    assert torch.equal(got, outputs(ref, ids))
    assert not torch.equal(got, outputs(reference(name, src), ids))  # it was quantized


def test_generate_and_pipeline(saved):
    import transformers

    src, lossless, _ = saved("llama")
    model = codecllm.load_model(lossless, device="cpu")
    ref = reference("llama", src)
    ids = ids_for(2, 6)
    got = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert torch.equal(got, ref.generate(ids, max_new_tokens=8, do_sample=False))
    tokenizer = codecllm.load_tokenizer(lossless)
    pipe = transformers.pipeline("text-generation", model=model, tokenizer=tokenizer)
    text = pipe("w5 w6 w7", max_new_tokens=4, do_sample=False)[0]["generated_text"]
    assert text.startswith("w5 w6 w7")


def test_open_reports_what_the_file_holds(saved):
    _, lossless, int8 = saved("llama")
    f = codecllm.open(lossless)
    assert f.mode == "lossless"
    assert "model.layers.0.self_attn.q_proj.weight" in f
    q = f.tensor("model.layers.0.self_attn.q_proj.weight")
    assert q.shape == (64, 64) and q.dtype == "BF16" and q.mode == "lossless"
    assert 0 < f.bits_per_weight < 16
    assert f.config["model_type"] == "llama"
    assert codecllm.open(int8).tensor("model.layers.0.mlp.up_proj.weight").mode == "int8"
    assert "tokenizer.json" in f.blob_names


def test_compress_summary(saved, tmp_path):
    src, _, _ = saved("gpt2")
    seen = []
    s = codecllm.compress(src, tmp_path / "g.cllm", progress=lambda done, total, name: seen.append((done, total)))
    assert s.file_bytes == (tmp_path / "g.cllm").stat().st_size
    assert s.stored_bytes < s.source_bytes
    assert seen and seen[-1][0] == seen[-1][1] == len(s.tensors)
    assert "bits/weight" in str(s)


# ---------------------------------------------------------------------------------------------
# bad input: an exception naming the file and what is wrong


def test_zstd_coding_is_lossless_on_the_cpu(saved, tmp_path):
    """compress(codec="zstd") as the CLI's --codec zstd: standard Zstd frames, decoded by libzstd on the CPU (nvCOMP
    on a GPU), the same bits."""
    src, _, _ = saved("llama")
    out = tmp_path / "zstd.cllm"
    codecllm.compress(src, out, codec="zstd", zstd_level=5, progress=False)
    planes = [p for t in codecllm.open(out).tensors for p in t.planes]
    assert any(p.endswith(":zstd") for p in planes) and not any(p.endswith(":rans") for p in planes)
    ids = ids_for(2)
    assert torch.equal(outputs(codecllm.load_model(out, device="cpu"), ids), outputs(reference("llama", src), ids))
    with pytest.raises(ValueError, match="codec must be"):
        codecllm.compress(src, tmp_path / "x.cllm", codec="lz4", progress=False)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_exp4_coding_is_lossless(saved, tmp_path, device):
    """compress(codec="exp4") as the CLI's --codec exp4: BF16 exponents as 4-bit codes, rebuilt by the CPU reference
    decoder or by the GPU's exp4 kernels, the same bits as transformers on the original checkpoint."""
    if device == "cuda" and not cuda_ready():
        pytest.skip("needs a CUDA device and a CUDA build")
    src, _, _ = saved("llama")
    out = tmp_path / "exp4.cllm"
    codecllm.compress(src, out, codec="exp4", progress=False)
    planes = [p for t in codecllm.open(out).tensors for p in t.planes]
    assert any(p == "exponent:exp4" for p in planes)
    ids = ids_for(2)
    got = outputs(codecllm.load_model(out, device=device), ids.to(device))
    assert torch.equal(got, outputs(reference("llama", src, device), ids.to(device)))


def test_corrupt_payload_names_the_tensor(saved, tmp_path):
    _, lossless, _ = saved("llama")
    bad = tmp_path / "bad.cllm"
    data = bytearray(lossless.read_bytes())
    f = codecllm.open(lossless)
    # flip a byte in the middle of the file's payload area (past the header, before the index)
    data[len(data) // 2] ^= 0x40
    bad.write_bytes(bytes(data))
    with pytest.raises((ValueError, RuntimeError)) as e:
        codecllm.load_model(bad, device="cpu")
    assert str(bad) in str(e.value)
    del f


def test_truncated_file_is_refused(saved, tmp_path):
    _, lossless, _ = saved("llama")
    bad = tmp_path / "short.cllm"
    bad.write_bytes(lossless.read_bytes()[:1000])
    with pytest.raises((ValueError, OSError, RuntimeError)) as e:
        codecllm.open(bad)
    assert str(bad) in str(e.value)


def test_wrong_shape_and_unknown_model_are_named(saved, tmp_path):
    import json

    src, _, _ = saved("llama")
    config = json.loads((src / "config.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    for p in src.iterdir():
        (other / p.name).write_bytes(p.read_bytes())
    config["intermediate_size"] = 96
    (other / "config.json").write_text(json.dumps(config))
    codecllm.compress(other, tmp_path / "shape.cllm", progress=False)
    with pytest.raises(ValueError, match="mlp.*has shape"):
        codecllm.load_model(tmp_path / "shape.cllm", device="cpu")
    config["model_type"] = "no-such-model"
    config["architectures"] = ["NoSuchModel"]
    (other / "config.json").write_text(json.dumps(config))
    codecllm.compress(other, tmp_path / "unknown.cllm", progress=False)
    with pytest.raises(Exception, match="no-such-model|NoSuchModel"):
        codecllm.load_model(tmp_path / "unknown.cllm", device="cpu")


def test_placement_checks(saved):
    _, lossless, _ = saved("llama")
    with pytest.raises(ValueError, match="unknown placement"):
        codecllm.load_model(lossless, device="cpu", placement="nowhere")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        codecllm.load_model(lossless, device="cpu", placement="host")
    with pytest.raises(ValueError, match="fused_products multiply from compressed weights in VRAM"):
        codecllm.load_model(lossless, device="cpu", fused_products=True)


# ---------------------------------------------------------------------------------------------
# GPU: every placement gives the bits of transformers' own model on the same device


@pytest.mark.skipif(not cuda_ready(), reason="needs a CUDA device and a CUDA build of codecllm")
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("placement", ["gpu", "gpu-compressed", "host"])
def test_cuda_placements_are_bit_identical(saved, name, placement):
    src, lossless, _ = saved(name)
    ref = reference(name, src, device="cuda")
    ids = ids_for(3).cuda()
    expected = outputs(ref, ids)
    # host: the lm_head crosses in pieces of 40 rows (three pieces for 96 rows), so that the pieces hand over.
    piece = 40 * ref.config.hidden_size * 2 if hasattr(ref.config, "hidden_size") else 1 << 20
    model = codecllm.load_model(lossless, device="cuda", placement=placement, decode_slots=2, host_piece_bytes=piece)
    for _ in range(3):  # the pipeline hands over between forwards
        assert torch.equal(outputs(model, ids), expected)
    mem = model.codecllm_memory()
    assert mem["peak_vram"] == mem["peak_allocated"] + mem["native_device"]
    if placement == "gpu-compressed":
        assert mem["compressed_weights"] > 0 and mem["scratch"] > 0 and mem["native_device"] > 0
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head is not None and head.weight is emb.weight
    plain = type(emb) is torch.nn.Embedding  # all of these models but Gemma 2, whose embedding scales its rows
    if plain and (placement == "host" or (placement == "gpu-compressed" and not tied)):
        # the embedding table left VRAM
        assert emb.weight.device.type == "cpu" and emb.weight.is_pinned(), type(emb)
        assert mem["pinned_host"] >= emb.weight.numel() * emb.weight.element_size()
    if placement == "host" and head is not None:
        assert head.weight.device.type == "cpu" and hasattr(head, "_codecllm_rows")


@pytest.mark.skipif(not cuda_ready(), reason="needs a CUDA device and a CUDA build of codecllm")
def test_cuda_host_embedding_refuses_an_id_outside_the_table(saved):
    _, lossless, _ = saved("llama")
    model = codecllm.load_model(lossless, device="cuda", placement="host")
    with pytest.raises(IndexError, match=r"outside \[0, 96\)"):
        outputs(model, torch.tensor([[1, 2, 96]], device="cuda"))
    ids = ids_for(3).cuda()
    assert torch.isfinite(outputs(model, ids)).all()  # the model still runs after the refusal


@pytest.mark.skipif(not cuda_ready(), reason="needs a CUDA device and a CUDA build of codecllm")
def test_cuda_forwards_run_on_a_priority_stream_and_hand_the_callers_back(saved):
    """The blocks run on the model's high-priority stream; the caller's stream is current again after a forward,
    also after one that raised, and the outputs are those of forwards on the caller's stream."""
    _, lossless, _ = saved("llama")
    model = codecllm.load_model(lossless, device="cuda", placement="host")
    seen = []
    model.model.layers[0].register_forward_pre_hook(lambda m, a: seen.append(torch.cuda.current_stream()))
    caller = torch.cuda.Stream()
    ids = ids_for(3).cuda()
    with torch.cuda.stream(caller):
        got = outputs(model, ids)
        assert torch.cuda.current_stream() == caller
        with pytest.raises(IndexError):
            outputs(model, torch.tensor([[1, 2, 96]], device="cuda"))
        assert torch.cuda.current_stream() == caller
    assert seen[0] == model._codecllm["priority_stream"].stream and seen[0].priority < caller.priority
    plain = codecllm.load_model(lossless, device="cuda", placement="host", priority_stream=False)
    assert torch.equal(outputs(plain, ids), got)


@pytest.mark.skipif(not cuda_ready(), reason="needs a CUDA device and a CUDA build of codecllm")
@pytest.mark.parametrize("refill_after_forward", [False, True])
def test_cuda_streamed_blocks_survive_a_forward_that_stops_midway(saved, refill_after_forward):
    """The block hand-over on the GPU, either refill: a forward that raises inside block 1 leaves the pipeline
    mid-forward; the next forwards restart it and give transformers' bits again, as does generate()."""
    src, lossless, _ = saved("llama")
    ref = reference("llama", src, device="cuda")
    ids = ids_for(3).cuda()
    expected = outputs(ref, ids)
    model = codecllm.load_model(
        lossless, device="cuda", placement="gpu-compressed", decode_slots=2, refill_after_forward=refill_after_forward
    )
    assert torch.equal(outputs(model, ids), expected)

    def fail(module, args):
        raise RuntimeError("stopped in block 1")

    hook = model.model.layers[1].register_forward_pre_hook(fail)
    with pytest.raises(RuntimeError, match="stopped in block 1"):
        outputs(model, ids)
    hook.remove()
    for _ in range(3):
        assert torch.equal(outputs(model, ids), expected)
    assert torch.equal(
        model.generate(ids, max_new_tokens=6, do_sample=False), ref.generate(ids, max_new_tokens=6, do_sample=False)
    )


@pytest.mark.skipif(not cuda_ready(), reason="needs a CUDA device and a CUDA build of codecllm")
def test_cuda_generate_and_int8(saved, tmp_path):
    src, lossless, int8 = saved("llama")
    ref = reference("llama", src, device="cuda")
    ids = ids_for(4, 6).cuda()
    model = codecllm.load_model(lossless, device="cuda", placement="gpu-compressed")
    assert torch.equal(
        model.generate(ids, max_new_tokens=10, do_sample=False), ref.generate(ids, max_new_tokens=10, do_sample=False)
    )
    codecllm.decompress(int8, tmp_path / "dequantized")
    dq = reference("llama", tmp_path / "dequantized", device="cuda")
    for placement in ("gpu", "gpu-compressed", "host"):
        m8 = codecllm.load_model(int8, device="cuda", placement=placement)
        assert torch.equal(outputs(m8, ids), outputs(dq, ids)), placement


@pytest.mark.skipif(not cuda_ready(), reason="needs a CUDA device and a CUDA build of codecllm")
@pytest.mark.parametrize("codec", ["rans", "exp4"])
def test_cuda_fused_products(saved, tmp_path, codec):
    """fused_products: a forward of one token multiplies straight from the compressed weights. Every linear layer's
    output is W x within one BF16 rounding of the float64 product over the original weights; forwards of several
    tokens, before and after, keep transformers' bits; a model the kernels cannot take is refused by name."""
    src, path, _ = saved("llama-wide")
    if codec == "exp4":
        path = tmp_path / "exp4.cllm"
        codecllm.compress(src, path, codec="exp4", progress=False)
    ref = reference("llama-wide", src, device="cuda")
    ids = ids_for(6).cuda()
    expected = outputs(ref, ids)
    model = codecllm.load_model(path, device="cuda", placement="gpu-compressed", fused_products=True)
    assert torch.equal(outputs(model, ids), expected)
    weights = {name: m.weight for name, m in ref.named_modules() if isinstance(m, torch.nn.Linear)}
    captured = []
    hooks = [
        m.register_forward_hook(lambda m, args, y, name=name: captured.append((name, args[0], y)))
        for name, m in model.named_modules()
        if ".layers." in name and isinstance(m, torch.nn.Linear)
    ]
    for step in range(2):
        captured.clear()
        outputs(model, ids[:, step : step + 1])
        assert model._codecllm["streamer"].fusing
        assert len(captured) == 7 * ref.config.num_hidden_layers
        for name, x, y in captured:
            want = x.double() @ weights[name].double().T
            bound = want.abs() * 2.0**-8 + 1e-5 * (x.double().abs() @ weights[name].double().abs().T)
            assert y.dtype == torch.bfloat16 and bool(((y.double() - want).abs() <= bound).all()), name
    for h in hooks:
        h.remove()
    assert torch.equal(outputs(model, ids), expected)  # the slots serve forwards of several tokens again
    with pytest.raises(ValueError, match="cannot be multiplied straight from its compressed form"):
        codecllm.load_model(saved("llama")[1], device="cuda", placement="gpu-compressed", fused_products=True)


@pytest.mark.skipif(not cuda_ready(), reason="needs a CUDA device and a CUDA build of codecllm")
def test_cuda_auto_mixes_within_the_budget(saved):
    """Budgets lowered from what gpu placement holds until the planner keeps some blocks compressed or on the
    host: the plan stays within its budget and gives the same bits."""
    src, lossless, _ = saved("llama-wide")
    ref = reference("llama-wide", src, device="cuda")
    ids = ids_for(5).cuda()
    expected = outputs(ref, ids)
    full = codecllm.load_model(lossless, device="cuda", placement="gpu").codecllm_memory()["resident_weights"]
    mixed = None
    for budget in range(full, 0, -max(full // 64, 1)):
        try:
            model = codecllm.load_model(lossless, device="cuda", placement="auto", vram_budget=budget, decode_slots=1)
        except RuntimeError as e:
            assert "too small" in str(e)
            break
        mem = model.codecllm_memory()
        assert mem["planned_total"] <= budget
        assert torch.equal(outputs(model, ids), expected), mem["block_placements"]
        if set(mem["block_placements"]) != {"gpu"}:
            mixed = mem["block_placements"]
    assert mixed is not None, "no budget gave a plan with compressed or host blocks"


def test_the_engines_planner_is_what_auto_uses():
    """placement="auto" plans with the engine's planner (engine/placement_plan.hpp) through the binding: 8 layers of
    300 MiB decoded / 200 MiB compressed, 1000 MiB fixed, two decode slots (the numbers of tests/placement_test.cpp)."""
    mib = 1 << 20
    layers = [(300 * mib, 200 * mib, 0)] * 8
    names, total, slots, text = codecllm._native.plan_placement(layers, 1000 * mib, 3400 * mib - 1, 2, 2)
    assert names == ["gpu"] + ["gpu-compressed"] * 7 and total == 3300 * mib and slots == 2
    names, total, _, _ = codecllm._native.plan_placement(layers, 1000 * mib, 3100 * mib, 2, 2)
    assert names == ["gpu"] + ["gpu-compressed"] * 4 + ["host"] * 3 and total == 3100 * mib
    assert "decode scratch" in text
    with pytest.raises(RuntimeError, match="too small"):
        codecllm._native.plan_placement(layers, 1000 * mib, 1000 * mib, 2, 2)
