"""A peft LoRA adapter -> a GGUF LoRA adapter that llama.cpp applies to the unchanged base.

Why a separate adapter, not merged weights: merging and re-quantising to Q4_1 shifted the
base model's top tokens (measured on SmolLM2-135M; see ``docs/measurements.md``), and one resident base with many ~5 MB adapters is
the whole point of specialists. The conventions follow llama.cpp's ``convert_lora_to_gguf.py``
(read, not copied):

* metadata ``general.architecture`` = the base's, ``general.type = "adapter"``,
  ``adapter.type = "lora"``, ``adapter.lora.alpha`` as a float32 (llama.cpp scales by
  ``alpha / rank``, as peft does);
* one pair per adapted matrix, named after the base tensor: ``blk.N.attn_q.weight.lora_a``
  and ``.lora_b``; ``lora_a`` is peft's ``lora_A`` (rank x in) and ``lora_b`` its ``lora_B``
  (out x rank), as they are -- GGUF stores dimensions reversed, which gives exactly the
  shapes llama.cpp checks against the base tensor;
* llama-architecture bases store Q and K with their rows permuted for llama.cpp's rotary
  layout (the HF->GGUF converter permutes them and transformers un-permutes them on load),
  so ``lora_b`` of ``attn_q``/``attn_k`` gets the same row permutation, with the KV head
  count for K.

Only the numpy side of safetensors and the ``gguf`` writer are needed: no torch.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from modelladder.distill.errors import DistillError

__all__ = [
    "BaseInfo", "HF_MODULE_PARENTS", "SUPPORTED_ARCHS", "export_adapter", "llama_permute", "llama_unpermute",
    "lora_pairs", "read_lora_gguf", "validate_adapter", "write_lora_gguf",
]  # fmt: skip

SUPPORTED_ARCHS = ("llama",)
# the transformers module each LoRA target sits in, per block (llama-architecture models)
HF_MODULE_PARENTS = {
    "q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
    "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp",
}  # fmt: skip
_PEFT_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")


def _field(reader: Any, key: str) -> Any:
    """A scalar or string metadata value (``ReaderField.contents`` only exists in newer gguf)."""
    f = reader.fields.get(key)
    if f is None:
        raise DistillError(f"the base GGUF has no `{key}`; is it a llama.cpp model file?")
    if hasattr(f, "contents"):
        return f.contents()
    part = f.parts[f.data[0]]
    return bytes(part).decode("utf-8") if part.dtype == np.uint8 else part[0].item()


def llama_permute(rows: np.ndarray, n_head: int) -> np.ndarray:
    """The row permutation llama.cpp's converter applies to Q/K weights (on the out dimension)."""
    out_dim = rows.shape[0]
    return rows.reshape(n_head, 2, out_dim // n_head // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def llama_unpermute(rows: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of :func:`llama_permute`: llama.cpp's rotary row order back to transformers'."""
    out_dim = rows.shape[0]
    return rows.reshape(n_head, out_dim // n_head // 2, 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


class BaseInfo:
    """What the export needs from the base GGUF: architecture, head counts, tensor shapes."""

    def __init__(self, gguf_path: Path, *, for_export: bool = True):
        import gguf

        try:
            reader = gguf.GGUFReader(str(gguf_path))
        except Exception as exc:
            raise DistillError(f"cannot read the base GGUF {gguf_path}: {exc}") from exc
        self.arch: str = _field(reader, "general.architecture")
        if for_export and self.arch not in SUPPORTED_ARCHS:
            raise DistillError(
                f"LoRA export supports {', '.join(SUPPORTED_ARCHS)} bases; {gguf_path.name} is {self.arch!r}"
            )
        self.n_head = int(_field(reader, f"{self.arch}.attention.head_count"))
        self.n_head_kv = int(_field(reader, f"{self.arch}.attention.head_count_kv"))
        self.n_blocks = int(_field(reader, f"{self.arch}.block_count"))
        self.shapes = {
            t.name: tuple(int(x) for x in t.shape) for t in reader.tensors
        }  # ggml order: (in, out)
        arch_enum = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[self.arch]
        self.names = gguf.get_tensor_name_map(arch_enum, self.n_blocks)

    def gguf_name(self, hf_module: str) -> str:
        name = self.names.get_name(hf_module)
        if name is None:
            raise DistillError(f"adapter module {hf_module!r} has no counterpart in the {self.arch} GGUF")
        return name + ".weight"

    def hf_modules(self) -> dict[str, str]:
        """{GGUF tensor name: transformers module name} for every LoRA target of every block,
        by the same name map :meth:`gguf_name` uses, so the two directions cannot disagree."""
        out = {}
        for i in range(self.n_blocks):
            for target, parent in HF_MODULE_PARENTS.items():
                hf = f"model.layers.{i}.{parent}.{target}"
                name = self.names.get_name(hf)
                if name is not None:
                    out[name + ".weight"] = hf
        return out


def lora_pairs(weights: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """peft state dict -> {hf module name: (A, B)}; anything that is not a LoRA pair is refused."""
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in weights.items():
        m = _PEFT_KEY.match(key)
        if m is None:
            raise DistillError(
                f"adapter tensor {key!r} is not a LoRA A/B matrix (embeddings, biases and modules_to_save "
                "cannot be exported as a llama.cpp adapter)"
            )
        pairs.setdefault(m["module"], {})[m["ab"]] = value
    out = {}
    for module, ab in pairs.items():
        if set(ab) != {"A", "B"}:
            raise DistillError(f"adapter module {module!r} has only lora_{''.join(ab)}")
        out[module] = (ab["A"], ab["B"])
    return out


def export_adapter(adapter_dir: Path, base_gguf: Path, out: Path, dtype: str = "f16") -> dict[str, Any]:
    """Write ``out`` (atomically) and return a summary (tensors, rank, alpha, bytes)."""
    from safetensors.numpy import load_file

    adapter_dir, base_gguf, out = Path(adapter_dir), Path(base_gguf), Path(out)
    cfg_path, weights_path = adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"
    if not cfg_path.is_file() or not weights_path.is_file():
        raise DistillError(
            f"{adapter_dir} is not a peft adapter (adapter_config.json / adapter_model.safetensors)"
        )
    config = json.loads(cfg_path.read_text())
    if config.get("use_rslora") or config.get("use_dora"):
        raise DistillError("rsLoRA/DoRA adapters have no llama.cpp equivalent; train a plain LoRA")
    if dtype not in ("f16", "f32"):
        raise DistillError(f"export dtype must be f16 or f32, not {dtype!r}")
    alpha, rank = float(config["lora_alpha"]), int(config["r"])
    base = BaseInfo(base_gguf)
    np_dtype = np.float16 if dtype == "f16" else np.float32

    tensors: list[tuple[str, np.ndarray]] = []
    for module, (a, b) in sorted(lora_pairs(load_file(str(weights_path))).items()):
        name = base.gguf_name(module)
        if name not in base.shapes:
            raise DistillError(f"the base GGUF has no tensor {name!r} for adapter module {module!r}")
        n_in, n_out = base.shapes[name][0], base.shapes[name][1]
        if a.shape != (rank, n_in) or b.shape != (n_out, rank):
            raise DistillError(
                f"{module}: LoRA shapes A{a.shape} B{b.shape} do not fit the base tensor {name} "
                f"(in {n_in}, out {n_out}, rank {rank}); was the adapter trained on this base?"
            )
        if base.arch == "llama" and name.endswith("attn_q.weight"):
            b = llama_permute(b, base.n_head)
        elif base.arch == "llama" and name.endswith("attn_k.weight"):
            b = llama_permute(b, base.n_head_kv)
        tensors.append((name + ".lora_a", np.ascontiguousarray(a, dtype=np_dtype)))
        tensors.append((name + ".lora_b", np.ascontiguousarray(b, dtype=np_dtype)))
    if not tensors:
        raise DistillError(f"{adapter_dir} holds no LoRA tensors")

    write_lora_gguf(out, base.arch, alpha, tensors, f"modelladder LoRA adapter (rank {rank})")
    return {
        "path": str(out),
        "tensors": len(tensors),
        "rank": rank,
        "alpha": alpha,
        "dtype": dtype,
        "arch": base.arch,
        "bytes": out.stat().st_size,
    }


def write_lora_gguf(
    out: Path, arch: str, alpha: float, tensors: list[tuple[str, np.ndarray]], name: str
) -> None:
    """Write a GGUF LoRA adapter (atomically): adapter metadata + ``<base>.lora_a/.lora_b`` tensors
    given in peft orientation (A: rank x in, B: out x rank)."""
    import gguf

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    writer.add_name(name)
    for tensor_name, arr in tensors:
        writer.add_tensor(tensor_name, arr)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out)


def validate_adapter(adapter: Path, base_gguf: Path) -> None:
    """Refuse, with a clear message, an adapter file llama.cpp would reject -- or crash on:
    llama.cpp trusts the GGUF header (a file with a bad version number segfaults the process),
    so the file is read with the ``gguf`` package first. Without that package (it comes with the
    ``distill`` extra) only the magic and version are checked."""
    adapter = Path(adapter)
    try:
        head = adapter.read_bytes()[:8]
    except OSError as exc:
        raise DistillError(f"cannot read the adapter {adapter}: {exc.strerror or exc}") from exc
    if head[:4] != b"GGUF" or int.from_bytes(head[4:8], "little") not in (2, 3):
        raise DistillError(f"{adapter} is not a GGUF file (bad magic or version)")
    try:
        import gguf
    except ImportError:
        return
    try:
        reader = gguf.GGUFReader(str(adapter))
    except Exception as exc:
        raise DistillError(f"{adapter} is not a readable GGUF file: {exc}") from exc
    kind = reader.fields.get("general.type")
    if (
        kind is None
        or _field(reader, "general.type") != "adapter"
        or _field(reader, "adapter.type") != "lora"
    ):
        raise DistillError(f"{adapter} is not a GGUF LoRA adapter (general.type / adapter.type)")
    base = BaseInfo(Path(base_gguf), for_export=False)
    arch = _field(reader, "general.architecture")
    if arch != base.arch:
        raise DistillError(f"{adapter} is a {arch} adapter; the base {Path(base_gguf).name} is {base.arch}")
    shapes = {t.name: tuple(int(x) for x in t.shape) for t in reader.tensors}
    for name, shape in shapes.items():
        target, _, ab = name.rpartition(".")
        if ab not in ("lora_a", "lora_b") or target not in base.shapes:
            raise DistillError(
                f"{adapter}: tensor {name!r} matches no tensor of the base {Path(base_gguf).name}"
            )
        n_in, n_out = base.shapes[target][0], base.shapes[target][1]
        if (ab == "lora_a" and shape[0] != n_in) or (ab == "lora_b" and shape[1] != n_out):
            raise DistillError(
                f"{adapter}: {name} has shape {shape}, which does not fit {target} {base.shapes[target]}"
            )


def read_lora_gguf(adapter: Path, base_gguf: Path) -> tuple[float, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The inverse of :func:`export_adapter`: ``(alpha, {transformers module: (A, B)})`` of a GGUF
    LoRA adapter, in peft orientation (A: rank x in, B: out x rank) and transformers' row order
    (the Q/K permutation undone), as float32."""
    import gguf

    adapter, base_gguf = Path(adapter), Path(base_gguf)
    validate_adapter(adapter, base_gguf)
    base = BaseInfo(base_gguf)
    reader = gguf.GGUFReader(str(adapter))
    alpha = float(_field(reader, "adapter.lora.alpha"))
    modules = base.hf_modules()
    halves: dict[str, dict[str, np.ndarray]] = {}
    for t in reader.tensors:
        target, _, ab = t.name.rpartition(".")
        if target not in modules:
            raise DistillError(
                f"{adapter}: tensor {t.name!r} has no transformers counterpart in a {base.arch} model"
            )
        # the reader gives numpy order, the reverse of ggml's: lora_a (rank, in), lora_b (out, rank)
        halves.setdefault(target, {})[ab] = np.array(t.data, dtype=np.float32)
    out = {}
    for target, pair in sorted(halves.items()):
        if set(pair) != {"lora_a", "lora_b"}:
            raise DistillError(f"{adapter}: {target} has only {', '.join(pair)}")
        a, b = pair["lora_a"], pair["lora_b"]
        if base.arch == "llama" and target.endswith("attn_q.weight"):
            b = llama_unpermute(b, base.n_head)
        elif base.arch == "llama" and target.endswith("attn_k.weight"):
            b = llama_unpermute(b, base.n_head_kv)
        out[modules[target]] = (a, np.ascontiguousarray(b))
    if not out:
        raise DistillError(f"{adapter} holds no LoRA tensors")
    return alpha, out
