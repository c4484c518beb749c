"""load_model: a transformers model built from the config a .cllm carries, its weights from the file.

The model is built with its parameters on the meta device (no memory, no initialization), then
each parameter gets its decoded tensor. With placement gpu-compressed or host, the weights of the
linear layers (nn.Linear, GPT-2's Conv1D) inside the decoder blocks stay compressed and are
decoded on the GPU just in time by a BlockStreamer; everything else (embeddings, norms, biases,
the lm_head) is decoded once at load, on the device it runs on. As in the C++ engine, an untied
embedding table then moves to pinned host memory (a step reads its few rows in place), and with
host the lm_head does too (streamed over in pieces each step): VRAM holds no large weight.
"""

from __future__ import annotations

import contextlib
import gc
import os
import tempfile
import types

import torch

from . import _native
from ._device_map import Split
from ._file import CllmFile
from ._host_weights import PIECE_BYTES, host_embedding, host_linear, plain_embedding, plain_linear, to_pinned
from ._priority_stream import PriorityStream
from ._streamer import BlockStreamer, block_layout

PLACEMENTS = ("gpu", "gpu-compressed", "host", "auto")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
)
TORCH_DTYPES = {
    "BF16": torch.bfloat16,
    "F16": torch.float16,
    "F32": torch.float32,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


@contextlib.contextmanager
def _parameters_on_meta():
    """Parameters registered inside are moved to the meta device as they are registered, so layers that
    initialize them afterwards do so on meta (free); their CPU allocation is never touched. Buffers stay real:
    models compute some (RoPE frequencies, position ids) in __init__ and never save them."""
    register = torch.nn.Module.register_parameter

    def on_meta(module, name, param):
        register(module, name, param)
        if param is not None:
            module._parameters[name] = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    torch.nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


def _carried_dir(file: CllmFile, names) -> tempfile.TemporaryDirectory:
    tmp = tempfile.TemporaryDirectory(prefix="codecllm-")
    for name in names:
        if name in file.blob_names:
            with open(os.path.join(tmp.name, name), "wb") as f:
                f.write(file.blob(name))
    return tmp


def load_tokenizer(path):
    """The tokenizer files carried in the .cllm, loaded with transformers' AutoTokenizer."""
    import transformers

    file = CllmFile(path)
    with _carried_dir(file, TOKENIZER_FILES + ("config.json",)) as d:
        if not any(os.path.exists(os.path.join(d, n)) for n in ("tokenizer.json", "tokenizer.model")):
            raise ValueError(f"{file.path}: carries no tokenizer (tokenizer.json or tokenizer.model)")
        return transformers.AutoTokenizer.from_pretrained(d)


def _model_class(config, cfg: dict, path: str):
    import transformers

    for arch in cfg.get("architectures") or []:
        cls = getattr(transformers, arch, None)
        if cls is not None:
            return cls
    for auto in (transformers.AutoModelForCausalLM, transformers.AutoModel):
        with contextlib.suppress(ValueError, KeyError):
            return auto._model_mapping[type(config)]
    raise ValueError(
        f"{path}: transformers {transformers.__version__} has no model class for "
        f"architectures {cfg.get('architectures')} / model_type '{cfg.get('model_type')}'"
    )


def _is_linear(module) -> bool:
    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"


def _find_blocks(model):
    """The decoder (or encoder) blocks: the longest ModuleList whose children are all of one class."""
    best = None
    for module in model.modules():
        uniform = isinstance(module, torch.nn.ModuleList) and len({type(m) for m in module}) == 1
        if uniform and (best is None or len(module) > len(best)):
            best = module
    return list(best) if best is not None else []


def _param_names(model):
    """Each parameter once, with every name it has (tied weights have several), in module order."""
    names = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), (p, []))[1].append(name)
    return list(names.values())


def _set_param(model, name: str, tensor: torch.Tensor):
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    module._parameters[leaf] = torch.nn.Parameter(tensor, requires_grad=False)


class _Loader:
    """Decodes the resident tensors: on the CPU reference decoder for device cpu, on the GPU otherwise."""

    def __init__(self, file: CllmFile, device: torch.device, dtype, int8_out: str, f32_as_bf16: bool):
        self.file, self.device, self.dtype = file, device, dtype
        self.int8_out, self.f32_as_bf16 = int8_out, f32_as_bf16

    def target_dtype(self, info):
        if info.mode == "int8" or (info.dtype in ("BF16", "F16", "F32") and self.dtype is not None):
            return self.dtype
        return TORCH_DTYPES[info.dtype]

    def cpu(self, info) -> torch.Tensor:
        data, scales = _native.decode_cpu(self.file._file, info.name)
        if info.mode == "int8":
            q = torch.frombuffer(bytearray(data), dtype=torch.int8).view(info.shape)
            s = torch.frombuffer(bytearray(scales), dtype=torch.float32)
            return (q.float() * s.view(-1, *([1] * (q.dim() - 1)))).to(self.target_dtype(info))
        t = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(TORCH_DTYPES[info.dtype]).view(info.shape)
        return t.to(self.target_dtype(info))

    def gpu(self, infos, device=None) -> list:
        """Decodes several tensors in one decoder on `device` (default: the loader's; the current device must be
        it); each comes out in the decoder's output type."""
        device = self.device if device is None else device
        out = []
        step = _native.max_tensors_per_decoder
        for i in range(0, len(infos), step):
            group = infos[i : i + step]
            dec = _native.GpuDecoder(self.file._file, [t.name for t in group], self.int8_out, self.f32_as_bf16)
            tensors = [torch.empty(t.shape, dtype=self.gpu_dtype(t), device=device) for t in group]
            for j, (t, x) in enumerate(zip(group, tensors)):
                if dec.output_bytes(j) != x.numel() * x.element_size():
                    raise ValueError(
                        f"{self.file.path}: tensor '{t.name}' decodes to {dec.output_bytes(j)} bytes, "
                        f"not the {x.numel() * x.element_size()} of {tuple(x.shape)} {x.dtype}"
                    )
            stream = torch.cuda.current_stream(device)
            dec.decode_from_host([x.data_ptr() for x in tensors], stream.cuda_stream)
            dec.check(stream.cuda_stream)
            out.extend(tensors)
        return out

    def gpu_dtype(self, info):
        if info.mode == "int8":
            return torch.float16 if self.int8_out == "f16" else torch.bfloat16
        if info.dtype == "F32" and self.f32_as_bf16:
            return torch.bfloat16
        return TORCH_DTYPES[info.dtype]


def _embeddings(model):
    """(input embedding, output embedding) modules, None where the model has none."""
    found = []
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        try:
            found.append(getattr(model, getter)())
        except (AttributeError, NotImplementedError):
            found.append(None)
    return found


def _move_to_host(model, placement, piece_bytes) -> dict:
    """Moves the embedding table (gpu-compressed: when untied; host: always) and, with host, the lm_head into pinned
    host memory, each still computing on the device its weight was decoded on; returns the bytes moved and the
    device bytes of the lm_head's piece buffers."""
    moved = {"pinned_host": 0, "resident_weights": 0, "scratch": 0}
    emb, head = _embeddings(model)
    weight_of = lambda m: m._parameters.get("weight") if m is not None else None
    tied = weight_of(emb) is not None and weight_of(head) is weight_of(emb)
    to_host_emb = plain_embedding(emb) and weight_of(emb) is not None and (placement == "host" or not tied)
    to_host_head = placement == "host" and plain_linear(head) and weight_of(head) is not None
    table = None
    if to_host_emb:
        w = weight_of(emb)
        table = to_pinned(w)
        moved["pinned_host"] += table.numel() * table.element_size()
        moved["resident_weights"] += w.numel() * w.element_size()
        with torch.cuda.device(w.device):
            host_embedding(emb, table, w.device)
    if to_host_head:
        w = weight_of(head)
        rows = table if tied and table is not None else to_pinned(w)
        if rows is not table:
            moved["pinned_host"] += rows.numel() * rows.element_size()
            moved["resident_weights"] += w.numel() * w.element_size()
        with torch.cuda.device(w.device):
            moved["scratch"] += host_linear(head, rows, w.device, piece_bytes)
    return moved


def _plan_auto(file, decoders, fixed, vram_budget, slots, prefetch):
    """(placement per block, total bytes, decode slots, plan text) within the budget, by the engine's planner,
    over the byte counts of the decoders the blocks will use; `fixed` is what the model holds besides its blocks'
    linear weights."""
    layers = [(block_layout(d)[1], d.range_bytes, d.device_bytes) for d in decoders]
    scratch = max((d.scratch_bytes for d in decoders), default=0)  # per decode stream, as the streamer allocates
    try:
        return _native.plan_placement(layers, fixed, int(vram_budget), prefetch, slots, scratch)
    except RuntimeError as e:
        raise RuntimeError(f"{file.path}: {e}") from None


def load_model(
    path,
    device="cuda",
    placement="gpu-compressed",
    vram_budget=None,
    dtype=None,
    *,
    decode_slots=2,
    prefetch=2,
    print_plan=False,
    host_piece_bytes=PIECE_BYTES,
    fused_products=False,
    device_map=None,
    max_memory=None,
    priority_stream=True,
    decode_blocks_per_sm=0,
    refill_after_forward=True,
):
    """A transformers PreTrainedModel whose weights come from the .cllm at `path`.

    device: "cpu" (the CPU reference decoder decodes every weight at load) or a CUDA device (every decode
    runs on the GPU). placement (CUDA): "gpu" (decoded at load), "gpu-compressed" (block weights compressed
    in VRAM, decoded just in time), "host" (compressed in pinned host RAM, copied and decoded just in time),
    "auto" (per block, the fastest mix within vram_budget bytes of weights, decoder tables and scratch).
    dtype: the model's floating type (default: the file's; float32 weights may be decoded to bfloat16; int8
    files dequantize to bfloat16 or float16). The model has codecllm_memory(), which reports where its bytes
    are. decode_slots: block-sized scratch slots (one holds the block computing, the others decode ahead); two
    suffice where Python's per-block launch time exceeds a block's decode (about 0.35 ms for an 8B block on an
    H200), and each more costs a block's decoded size. prefetch (host): device staging buffers for compressed
    blocks in flight. host_piece_bytes (host): the lm_head crosses PCIe in pieces of at most this many bytes.
    fused_products (gpu-compressed, bfloat16): in forwards of one token (generation at batch 1) the blocks' linear
    layers multiply straight from the compressed weights, as the C++ engine does: nothing is decoded into scratch,
    at the price of summing each row in the project's GEMV order instead of cuBLAS's, so logits differ from
    transformers' in rounding (the weights are the same bits). Forwards of more tokens decode as without it. A warp
    decodes a whole rANS chunk, so the products want short chunks, as compress() writes by default.
    device_map (CUDA), as in transformers: "auto" splits the blocks into contiguous ranges over the GPUs by the
    engine's planner (embedding on the first, final norm and lm_head on the last; placement applies on every
    device, "auto" within each device's budget), or a dict of module names (or prefixes, "" for the rest) to
    devices. max_memory: {device: bytes or "20GiB"} for each GPU (default with "auto": 90% of what each has free;
    leave room for the KV cache). Each device gets its own decode slots and side streams, its blocks decode on it,
    and activations cross between devices as peer copies; print_plan prints the per-device plan before loading.
    priority_stream (CUDA, one device, blocks decoded just in time): forwards run on a high-priority stream of the
    model's own, ordered with the caller's stream both ways, so that the blocks' matmuls go ahead of the decodes on
    the side streams instead of queueing behind them (codecllm/_priority_stream.py). decode_blocks_per_sm (CUDA): at
    most that many decode thread blocks resident on each SM (0: as many as fit); a decode at full occupancy holds
    every register of the SMs, so the forward's kernels beside it wait for its blocks to retire.
    refill_after_forward (default on): the next forward's first blocks start decoding on the GPU after the whole
    forward (its head included), not beside the head after the last block, so that the head's product has the GPU
    to itself (without it, the lm_head product took 649 us a call beside the decodes against 268 alone on the 8B
    shape; docs/BENCHMARKS.md). A forward of the blocks alone, without the model's own forward, refills at its first
    block.
    """
    import transformers

    file = CllmFile(path)
    device = torch.device(device)
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown placement '{placement}' (known: {', '.join(PLACEMENTS)})")
    if device.type == "cpu" and placement not in ("gpu", "gpu-compressed"):
        raise ValueError(f"placement '{placement}' needs a CUDA device; on the CPU every weight is decoded at load")
    if device.type == "cuda":
        if not _native.has_cuda:
            raise RuntimeError("this build of codecllm has no CUDA support (built without nvcc): use device='cpu'")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    if placement == "auto" and not vram_budget and device_map is None:
        raise ValueError("placement 'auto' needs vram_budget (bytes), or a device_map with max_memory per device")
    if device_map is not None and device.type != "cuda":
        raise ValueError("device_map places modules on CUDA devices; device='cpu' runs everything on the CPU")
    if device_map is not None and fused_products:
        raise ValueError("fused_products run on one device: leave device_map out")
    if fused_products and (device.type != "cuda" or placement != "gpu-compressed"):
        raise ValueError("fused_products multiply from compressed weights in VRAM: placement 'gpu-compressed' on CUDA")
    cfg = file.config
    with _carried_dir(file, ("config.json", "generation_config.json")) as d:
        config = transformers.AutoConfig.from_pretrained(d)
        generation = None
        if os.path.exists(os.path.join(d, "generation_config.json")):
            generation = transformers.GenerationConfig.from_pretrained(d)
    floats = [t for t in file.tensors if t.dtype in ("BF16", "F16", "F32")]
    stored = max({t.dtype for t in floats}, key=lambda k: sum(t.elements for t in floats if t.dtype == k))
    if dtype is None:
        dtype = (
            torch.float16
            if stored == "F16"
            else torch.bfloat16
            if (stored == "BF16" or file.mode == "int8" and device.type == "cuda")
            else torch.float32
        )
    int8_out = "f16" if dtype == torch.float16 else "bf16"
    f32_as_bf16 = dtype == torch.bfloat16
    if device.type == "cuda" and file.mode == "int8" and dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"{file.path}: int8 weights dequantize on the GPU to bfloat16 or float16, not {dtype}")
    with _parameters_on_meta():
        model = _model_class(config, cfg, file.path)(config)
    model.eval()
    if generation is not None and getattr(model, "generation_config", None) is not None:
        model.generation_config = generation

    blocks_modules = _find_blocks(model)
    linear_weights = {}  # id(param) -> (block index, module)
    if device.type == "cuda" and placement != "gpu":
        for b, block in enumerate(blocks_modules):
            for m in block.modules():
                if _is_linear(m) and m.weight is not None:
                    linear_weights[id(m.weight)] = (b, m)

    streamed = [[] for _ in blocks_modules]  # per block: (tensor name, module, shape)
    resident = []  # (param names, info)
    missing = []  # parameters the file leaves to tie_weights (an lm_head tied to the embedding)
    for param, names in _param_names(model):
        name = next((n for n in names if n in file), None)
        if name is None:
            missing.append(names[0])
            continue
        info = file.tensor(name)
        if tuple(info.shape) != tuple(param.shape):
            raise ValueError(
                f"{file.path}: tensor '{name}' has shape {list(info.shape)}, but the model's "
                f"'{names[0]}' is {list(param.shape)}"
            )
        if id(param) in linear_weights and len(names) == 1:
            b, module = linear_weights[id(param)]
            streamed[b].append((name, module, tuple(info.shape)))
        else:
            resident.append((names, info))

    split = Split(model, blocks_modules, device, device_map)
    plan_text = ""
    if split.auto:
        plan_text = split.plan(file, streamed, resident, placement, max_memory, decode_slots, prefetch)
        if print_plan:
            print(plan_text, end="")

    loader = _Loader(file, device, dtype, int8_out, f32_as_bf16)
    memory = {"resident_weights": 0}
    tensors = streamers = decoders = None
    on_host = {}
    try:
        if device.type == "cpu":
            tensors = [loader.cpu(info) for _, info in resident]
        else:
            tensors = [None] * len(resident)
            for d in split.devices:  # each device's resident tensors decoded by the GPU they run on
                mine = [i for i, (names, _) in enumerate(resident) if split.device_of(names[0]) == d]
                with split.on(d):
                    for i, t in zip(mine, loader.gpu([resident[i][1] for i in mine], split.torch_device(d))):
                        tensors[i] = t if t.dtype == dtype or not t.is_floating_point() else t.to(dtype)
        for (names, _), t in zip(resident, tensors):
            for n in names:
                _set_param(model, n, t)
            memory["resident_weights"] += t.numel() * t.element_size()
        # The loop variable would keep the last tensor (often the lm_head) alive on the device until load_model
        # returns, even after _move_to_host dropped the model's reference: with host that was 1 GiB of the 8B shape's
        # peak.
        tensors = t = None
        if missing:
            model.tie_weights()
            streamed_ids = {id(m.weight) for linears in streamed for _, m, _ in linears}
            for name, p in model.named_parameters():
                if p.is_meta and id(p) not in streamed_ids:
                    raise ValueError(f"{file.path}: the model's parameter '{name}' is not in the file")
        for name, buf in list(model.named_buffers()):
            module_name, _, leaf = name.rpartition(".")
            owner = model.get_submodule(module_name) if module_name else model
            owner._buffers[leaf] = buf.to(split.torch_device(split.device_of(name)))
        if device.type == "cuda" and placement in ("gpu-compressed", "host"):
            on_host = _move_to_host(model, placement, host_piece_bytes)
            memory["resident_weights"] -= on_host["resident_weights"]
        streamers = []
        for d in split.devices:
            block_list = [
                (blocks_modules[b], streamed[b])
                for b in range(len(blocks_modules))
                if streamed[b] and split.block_device[b] == d
            ]
            if not block_list:
                continue
            with split.on(d):
                # The blocks' decodes share one scratch buffer per side stream (zstd frames, int8 predictor
                # residuals) instead of each decoder holding its own.
                decoders = [
                    _native.GpuDecoder(
                        file._file, [n for n, _, _ in linears], int8_out, f32_as_bf16, external_scratch=True
                    )
                    for _, linears in block_list
                ]
                placements = [placement] * len(block_list)
                slots = decode_slots
                if split.auto:
                    placements, slots = split.placements_of(d, block_list, blocks_modules, placement)
                elif placement == "auto":
                    fixed = memory["resident_weights"] if len(split.devices) == 1 else split.resident_bytes(d, model)
                    one = len(split.devices) == 1 and vram_budget
                    budget = vram_budget if one else split.budget(d, max_memory)
                    placements, memory["planned_total"], slots, text = _plan_auto(
                        file, decoders, fixed, budget, decode_slots, prefetch
                    )
                    if print_plan:
                        print(text, end="")
                for _, linears in block_list:
                    for _, m, _ in linears:
                        del m._parameters["weight"]  # a plain attribute from now on, set before each block runs
                streamers.append(
                    BlockStreamer(
                        block_list,
                        decoders,
                        placements,
                        dtype,
                        split.torch_device(d),
                        slots=slots,
                        prefetch=prefetch,
                        fused=fused_products,
                        blocks_per_sm=decode_blocks_per_sm,
                        refill_after_forward=refill_after_forward,
                    )
                )
                if refill_after_forward:
                    model.register_forward_hook(lambda mod, args, out, st=streamers[-1]: st.end_forward())
            decoders = None  # the streamer holds them; gpu blocks' go once decoded
        for key in ("decoded_weights", "compressed_weights", "decoder_tables", "pinned_host", "scratch"):
            if any(key in st.memory for st in streamers):
                memory[key] = sum(st.memory.get(key, 0) for st in streamers)
        for key in ("pinned_host", "scratch"):
            if on_host.get(key):
                memory[key] = memory.get(key, 0) + on_host[key]
        split.hook_inputs()
    except BaseException:
        # Nothing half-loaded stays on the device: drop every reference to what was made (the hooks tie the
        # streamer and the model in a cycle), collect, and hand torch's cached blocks back.
        del model, streamers, tensors, decoders, split
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        raise

    if streamers:
        memory["block_placements"] = [b.placement for st in streamers for b in st.blocks]
    if (streamers or any(on_host.values())) and getattr(model, "generation_config", None) is not None:
        # generate() compiles the forward for a static cache; the streamer's hooks (events, native decode calls,
        # weights set before each block) are not traceable, so generation stays eager.
        model.generation_config.disable_compile = True
    if len(split.devices) > 1:
        model.hf_device_map = split.hf_device_map()
    model._codecllm = {
        "file": file,
        "streamer": streamers[0] if streamers else None,
        "streamers": streamers or [],
        # forwards on a high-priority stream of the model's own (one device, blocks decoded just in time)
        "priority_stream": PriorityStream(model, split.torch_device(split.devices[0]))
        if streamers and priority_stream and len(split.devices) == 1
        else None,
        "placement": placement,
        "device": device if len(split.devices) == 1 else split.torch_device(split.devices[0]),
        "devices": [split.torch_device(d) for d in split.devices] if device.type == "cuda" else [device],
        "memory": memory,
        "plan": plan_text,
    }
    model.codecllm_memory = types.MethodType(_memory_report, model)
    return model


def _memory_report(model) -> dict:
    """Where the model's bytes are: decoded and compressed weights, decoder tables, scratch, pinned host RAM, and
    (CUDA) the device's current and peak allocation by torch."""
    info = model._codecllm
    report = dict(info["memory"], placement=info["placement"], device=str(info["device"]))
    if info["device"].type == "cuda":
        # The decoders' compressed ranges and tables are allocated by the native core, outside torch's allocator,
        # and held from load to the end: the device's peak is torch's peak plus them.
        native = report.get("compressed_weights", 0) + report.get("decoder_tables", 0)
        report["allocated"] = torch.cuda.memory_allocated(info["device"])
        report["peak_allocated"] = torch.cuda.max_memory_allocated(info["device"])
        report["native_device"] = native
        report["peak_vram"] = report["peak_allocated"] + native
        if len(info["devices"]) > 1:  # each GPU's own figures; peak_vram is then the largest of them
            report["per_device"] = {}
            for d in info["devices"]:
                mine = [st for st in info["streamers"] if st.device == d]
                own = sum(st.memory["compressed_weights"] + st.memory["decoder_tables"] for st in mine)
                peak = torch.cuda.max_memory_allocated(d)
                report["per_device"][str(d)] = {"peak_allocated": peak, "native_device": own, "peak_vram": peak + own}
            report["allocated"] = sum(torch.cuda.memory_allocated(d) for d in info["devices"])
            report["peak_vram"] = max(v["peak_vram"] for v in report["per_device"].values())
    return report
