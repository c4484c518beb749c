"""Several GPUs for one model: which device each decoder block and each other module runs on, in the conventions
of transformers and accelerate (device_map, max_memory), planned by the engine's multi-device planner
(engine/device_split.hpp) for device_map="auto".

Blocks split into contiguous ranges, one a device; modules before the blocks that hold parameters (the embedding)
go to the first device, those after them (final norm, lm_head) to the last, modules holding only buffers (rotary
tables) to the first. Every block and module of a split model then moves the tensors it is given onto its own
device before it runs (peer copies, no host round trip), as accelerate's hooks do.
"""

from __future__ import annotations

import contextlib
import re

import torch

from . import _native

UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})


def parse_bytes(value) -> int:
    """Bytes from an int or a string such as "20GiB", "80GB" or "512 MiB" (GB: 10^9 bytes, GiB: 2^30)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"a memory size cannot be negative: {value}")
        return value
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]I?B|B)?\s*", str(value), re.IGNORECASE)
    if m is None:
        raise ValueError(f"not a memory size: {value!r} (an int of bytes, or e.g. '20GiB', '80GB')")
    return int(float(m.group(1)) * UNITS[(m.group(2) or "").upper()])


def device_index(value) -> int:
    """The CUDA device number of 0, "cuda:0", "0" or torch.device("cuda", 0); the CPU and disk are refused (the
    host placement keeps weights in host RAM instead)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    text = str(value)
    if text.isdigit():
        return int(text)
    d = torch.device(text) if not isinstance(value, torch.device) else value
    if d.type != "cuda":
        raise ValueError(
            f"device_map places modules on CUDA devices only, not {value!r} (placement='host' keeps "
            "compressed weights in host RAM)"
        )
    return d.index if d.index is not None else 0


def assign(device_map: dict, names) -> dict:
    """Each name's device: that of the longest key equal to the name or a prefix of it ending at a dot ("" covers
    every name), as transformers reads a device_map. Raises ValueError naming what no key covers."""
    keys = {k: device_index(v) for k, v in device_map.items()}
    out, missing = {}, []
    for name in names:
        best = None
        for k in keys:
            if (k == "" or name == k or name.startswith(k + ".")) and (best is None or len(k) > len(best)):
                best = k
        if best is None:
            missing.append(name)
        else:
            out[name] = keys[best]
    if missing:
        raise ValueError(
            f"device_map places no device for {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}"
        )
    return out


def budgets(max_memory, devices=None) -> dict:
    """{device: bytes} from max_memory (accelerate's form: {0: "20GiB", 1: ...}), else 90% of each visible GPU's
    free memory."""
    if max_memory:
        return {device_index(k): parse_bytes(v) for k, v in max_memory.items() if str(k) not in ("cpu", "disk")}
    found = {}
    for d in devices if devices is not None else range(torch.cuda.device_count()):
        free, _ = torch.cuda.mem_get_info(d)
        found[d] = int(free * 0.9)
    if not found:
        raise ValueError("device_map='auto' found no CUDA device")
    return found


def plan_auto(layers, device_budgets: dict, first_bytes, last_bytes, placement, prefetch, slots):
    """(block index -> device, device -> (placement per block, decode slots), plan text) from the engine's planner;
    layers: per block (decoded, compressed, decoder table) bytes."""
    devices = sorted(device_budgets)
    try:
        shares, text = _native.plan_devices(
            layers,
            [device_budgets[d] for d in devices],
            first_bytes,
            last_bytes,
            0,
            placement,
            prefetch,
            slots,
        )
    except RuntimeError as e:
        raise RuntimeError(f"device_map='auto': {e} (devices {devices})") from None
    block_device, per_device = {}, {}
    for d, (first, end, names, _, decode_slots) in zip(devices, shares):
        for b in range(first, end):
            block_device[b] = d
        per_device[d] = (list(names), decode_slots)
    text = re.sub(r"^device (\d+)", lambda m: f"cuda:{devices[int(m.group(1))]}", text, flags=re.MULTILINE)
    return block_device, per_device, text


def to_device(obj, device):
    """obj with every tensor in it (through tuples, lists and dicts) on device."""
    if isinstance(obj, torch.Tensor):
        return obj if obj.device == device else obj.to(device)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a named tuple
        return type(obj)(*(to_device(o, device) for o in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


def move_inputs_hook(module, device):
    """Makes module move the tensors it is given onto device before it runs."""
    device = torch.device("cuda", device) if isinstance(device, int) else device
    module.register_forward_pre_hook(
        lambda mod, args, kwargs: (to_device(args, device), to_device(kwargs, device)), with_kwargs=True
    )


class Split:
    """Where each block and each other module of a model runs: on one device (device_map None), or on several by a
    device_map (a dict, or "auto": planned when plan() is called). Devices are CUDA numbers, or "cpu"."""

    def __init__(self, model, blocks, device: torch.device, device_map):
        self.model = model
        self.blocks = blocks
        self.auto = device_map == "auto"
        names = {id(m): n for n, m in model.named_modules()}
        self.block_names = [names[id(b)] for b in blocks]
        single = device.index if device.type == "cuda" else "cpu"
        self.block_device = dict.fromkeys(range(len(blocks)), single)
        self.map = None
        if isinstance(device_map, dict):
            self.map = dict(device_map)
            self.block_device = dict(enumerate(assign(self.map, self.block_names).values()))
        elif device_map is not None and not self.auto:
            raise ValueError(
                f"device_map must be None, 'auto' or a dict of module names to devices, not {device_map!r}"
            )
        self.single = single
        self.first = self.last = single
        self._order = {n: i for i, (n, _) in enumerate(model.named_modules())}
        self._first_block = min((self._order[n] for n in self.block_names), default=0)
        self.per_device = {}
        self._refresh()

    def _refresh(self):
        found = list(dict.fromkeys(self.block_device.values()))
        if self.map is not None:
            found += [d for d in map(device_index, self.map.values()) if d not in found]
        self.devices = found or [self.single]
        if self.map is None and len(self.devices) > 1:
            self.first, self.last = self.block_device[0], self.block_device[len(self.blocks) - 1]

    def _in_block(self, name):
        for b, prefix in enumerate(self.block_names):
            if name.startswith(prefix + "."):
                return b
        return None

    def device_of(self, name: str):
        """The device of a parameter or buffer, by its name."""
        if len(self.devices) == 1:
            return self.devices[0]
        b = self._in_block(name)
        if b is not None:
            return self.block_device[b]
        if self.map is not None:
            return assign(self.map, [name])[name]
        return self.first if self._side(name) == 0 else self.last

    @staticmethod
    def torch_device(d):
        return torch.device("cpu") if d == "cpu" else torch.device("cuda", d)

    @staticmethod
    def on(d):
        """The device current for what is made inside (native allocations, streams and events land there)."""
        return contextlib.nullcontext() if d == "cpu" else torch.cuda.device(d)

    def plan(self, file, streamed, resident, placement, max_memory, slots, prefetch) -> str:
        """Plans device_map="auto" with the engine's planner: each block's bytes from the file (decoded, and as
        stored where it streams), the resident tensors before the blocks on the first device and those after on the
        last; returns the plan as text."""
        layers = []
        for b, prefix in enumerate(self.block_names):
            mine = [info for names, info in resident if self._in_block(names[0]) == b]
            linears = [file.tensor(n) for n, _, _ in streamed[b]]
            decoded = sum(t.decoded_bytes for t in mine + linears)
            stored = sum(t.stored_bytes for t in linears) + sum(t.decoded_bytes for t in mine)
            layers.append((decoded, stored, 0))
        first = sum(i.decoded_bytes for n, i in resident if self._in_block(n[0]) is None and self._side(n[0]) == 0)
        last = sum(i.decoded_bytes for n, i in resident if self._in_block(n[0]) is None and self._side(n[0]) == 1)
        device_budgets = budgets(max_memory)
        self.block_device, self.per_device, text = plan_auto(
            layers, device_budgets, first, last, placement, prefetch, slots
        )
        self._refresh()
        return text

    def _side(self, name):
        """0: a resident tensor outside the blocks goes with the first device, 1: with the last."""
        owner = name.rpartition(".")[0]
        module = self.model.get_submodule(owner) if owner else self.model
        only_buffers = not any(True for _ in module.parameters(recurse=False))
        return 0 if only_buffers or self._order.get(owner, 0) < self._first_block else 1

    def placements_of(self, d, block_list, blocks, placement):
        """(placement per block of block_list, decode slots) on device d from the plan."""
        names, slots = self.per_device[d]
        first = min(b for b, dev in self.block_device.items() if dev == d)
        index = {id(m): i for i, m in enumerate(blocks)}
        return [names[index[id(m)] - first] for m, _ in block_list], slots

    def budget(self, d, max_memory) -> int:
        if not max_memory:
            raise ValueError("placement 'auto' over a device_map needs max_memory, a budget for each device")
        return budgets(max_memory)[d]

    def resident_bytes(self, d, model) -> int:
        dev = self.torch_device(d)
        return sum(p.numel() * p.element_size() for p in model.parameters() if p.device == dev)

    def hook_inputs(self):
        """With several devices, every block and every module holding tensors outside them moves what it is given
        onto its device before it runs."""
        if len(self.devices) < 2:
            return
        for b, block in enumerate(self.blocks):
            move_inputs_hook(block, self.block_device[b])
        inside = {id(m) for block in self.blocks for m in block.modules()}
        self.modules = {}
        for name, m in self.model.named_modules():
            if id(m) in inside:
                continue
            own = next(iter([*m.parameters(recurse=False), *m.buffers(recurse=False)]), None)
            if own is not None and own.device.type == "cuda":
                move_inputs_hook(m, own.device)
                self.modules[name] = own.device.index

    def hf_device_map(self) -> dict:
        """transformers' record of where each part runs (model.hf_device_map)."""
        out = {n: self.block_device[b] for b, n in enumerate(self.block_names)}
        out.update(getattr(self, "modules", {}))
        return out
