"""``distill export``: a trained specialist in the forms the serving engines load.

Where one process is not enough, the specialists move onto a serving engine and the fleet
reaches them as ``openai`` rungs whose ``model`` is the adapter's name. The two engines want
different files:

* llama.cpp's servers (``llama-server --lora``, llama-cpp-python's ``python -m
  llama_cpp.server --lora_path``) apply a GGUF LoRA adapter to the unchanged quantised base
  GGUF -- the very files the in-process ``llamacpp`` rung uses;
* vLLM (``--enable-lora --lora-modules NAME=DIR``) loads PEFT adapters
  (``adapter_model.safetensors`` with keys ``base_model.model.<module>.lora_A.weight`` /
  ``lora_B.weight`` and an ``adapter_config.json`` with ``r``, ``lora_alpha``,
  ``target_modules``; no DoRA, no ``modules_to_save``, rank at most ``--max-lora-rank``) on an
  unquantised transformers base: vLLM's GGUF support is experimental and does not take LoRA
  adapters well.

The export directory holds both, with the commands that serve them and the fleet rung that
uses them::

    OUT/llamacpp/adapter.gguf      GGUF LoRA adapter (base: serve.json "base_gguf")
    OUT/peft/                      adapter_model.safetensors + adapter_config.json
    OUT/base/                      --with-base: the dequantised float32 base + tokenizer (vLLM)
    OUT/llamacpp/base.gguf         --with-base: the base GGUF itself
    OUT/serve.json                 what was exported, and each engine's command as argv
    OUT/README.md                  the same, for a person
    OUT/fleet-rung.toml            the ``openai`` rung (and ``first_rung``) to paste into a fleet

A specialist is named the way ``distill eval`` / ``promote`` name it: either the directory
``distill train`` wrote (``adapter/`` is the peft form as trained, ``adapter.gguf`` its GGUF
export), or a fleet rung with an ``adapter`` -- by name, or the first rung of a step. A fleet
rung carries only the GGUF adapter, so its PEFT form is converted back from the GGUF (f16
weights, the Q/K row permutation undone; :func:`~modelladder.distill.export_gguf.read_lora_gguf`).

Everything is written into a temporary directory beside ``OUT`` and renamed into place, so a
failure leaves nothing half-written; an existing non-empty ``OUT`` is replaced only with
``force``.

The served specialist sees the prompt the in-process one sees only if the server renders it
the same way: both llama.cpp servers render the GGUF's own chat template (the in-process
backend renders that template too), vLLM renders the tokenizer's (written into ``base/`` from
the same GGUF). And only if it is sent the same messages: an ``openai`` rung sends a contract
as ``response_format``/``tools`` and leaves its instructions out of the prompt, which is not
the prompt the specialist was trained on, so the exported rung sets ``local_prompt = true``
(:mod:`modelladder.backends.openai_compat`). llama-cpp-python's server applies a repeat penalty of 1.1 unless told
otherwise, and the OpenAI API has no field for it: the command turns it off
(``--last_n_tokens_size 0``) so that temperature 0 is plain greedy decoding, as in process.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelladder.distill.errors import DistillError

__all__ = [
    "BASE_DIR", "ExportConfig", "GGUF_DIR", "PEFT_DIR", "README", "RUNG_TOML", "SERVE_JSON", "Specialist",
    "VLLM_MAX_LORA_RANKS", "export_for_serving", "find_specialist", "vllm_max_lora_rank",
]  # fmt: skip

GGUF_DIR = "llamacpp"
PEFT_DIR = "peft"
BASE_DIR = "base"
SERVE_JSON = "serve.json"
README = "README.md"
RUNG_TOML = "fleet-rung.toml"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
# the values vLLM's ``--max-lora-rank`` accepts (vllm/config/lora.py, ``MaxLoRARanks``)
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


@dataclass
class ExportConfig:
    """One export. The specialist is ``run_dir`` (what ``distill train --out`` wrote) or a rung of
    ``fleet_path``: ``rung`` by name, or the first rung of ``step``. ``name`` is the adapter's
    name on the server (``--model_alias``, vLLM's ``--lora-modules NAME=``) and the rung's
    ``model``; ``host``/``port`` go into the commands and the rung's ``url``."""

    out_dir: Path
    run_dir: Path | None = None
    fleet_path: Path | None = None
    step: str | None = None
    rung: str | None = None
    base_gguf: Path | None = None  # run_dir only: overrides the base named in train_report.json
    name: str | None = None
    with_base: bool = False
    force: bool = False
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass
class Specialist:
    """A trained specialist as found: its base GGUF and its adapter in the forms at hand."""

    name: str
    step: str | None
    base_gguf: Path
    adapter_gguf: Path | None  # None: exported from ``peft_dir``
    peft_dir: Path | None  # None: converted from ``adapter_gguf``
    params: int
    n_ctx: int
    prompt_format: str
    source: str
    price_per_second: float = 0.0


# --------------------------------------------------------------------------- finding it


def _gguf_params(base_gguf: Path) -> int:
    """The base model's parameter count, from its tensors (a fleet rung needs ``params``)."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(base_gguf))
    except Exception as exc:
        raise DistillError(f"cannot read the base GGUF {base_gguf}: {exc}") from exc
    return int(sum(int(t.n_elements) for t in reader.tensors))


def _has_chat_template(base_gguf: Path) -> bool:
    import gguf

    return "tokenizer.chat_template" in gguf.GGUFReader(str(base_gguf)).fields


def _from_run(cfg: ExportConfig, run: Path) -> Specialist:
    if not run.is_dir():
        raise DistillError(f"no trained specialist at {run}: pass the directory `distill train --out` wrote")
    report_path = run / "train_report.json"
    if not report_path.is_file():
        raise DistillError(f"{run} is not a `distill train` output (no train_report.json)")
    try:
        report = json.loads(report_path.read_text())
        step = str(report["step"])
        base = Path(cfg.base_gguf or report["base_gguf"]).expanduser()
        fmt = str(report.get("config", {}).get("prompt_format") or "chat_template")
    except (ValueError, KeyError, TypeError) as exc:
        raise DistillError(f"{report_path} is unreadable ({type(exc).__name__}: {exc})") from exc
    if not base.is_file():
        raise DistillError(f"the base GGUF {base} named in {report_path} is not there; pass --base")
    peft = run / "adapter"
    gguf_file = run / "adapter.gguf"
    has_peft = (peft / PEFT_WEIGHTS).is_file() and (peft / PEFT_CONFIG).is_file()
    if not has_peft and not gguf_file.is_file():
        raise DistillError(f"{run} holds no adapter (adapter/ or adapter.gguf); did training finish?")
    return Specialist(
        name=cfg.name or f"{step}-specialist",
        step=step,
        base_gguf=base,
        adapter_gguf=gguf_file if gguf_file.is_file() else None,
        peft_dir=peft if has_peft else None,
        params=_gguf_params(base),
        n_ctx=8192,
        prompt_format=fmt,
        source=f"distill train output {run.resolve()}",
    )


def _from_fleet(cfg: ExportConfig) -> Specialist:
    from modelladder.distill.evaluate import champion_rung
    from modelladder.fleet import FleetError, load_fleet

    try:
        fleet = load_fleet(cfg.fleet_path)
        if cfg.rung:
            rung = fleet.rung(cfg.rung)
        else:
            assert cfg.step is not None
            rung = champion_rung(fleet, cfg.step)
        if rung.adapter is None or rung.backend != "llamacpp":
            what = f"rung {rung.name!r}" if cfg.rung else f"step {cfg.step!r} starts at {rung.name!r}, which"
            raise DistillError(
                f"{fleet.source}: {what} is not a specialist (a llamacpp rung with an `adapter`); "
                "promote one first (`modelladder distill promote`) or pass --run"
            )
        base = rung.resolve_path()
    except FleetError as exc:
        raise DistillError(str(exc)) from exc
    adapter = Path(rung.adapter).expanduser()
    if not adapter.is_file():
        raise DistillError(f"rung {rung.name!r}: its adapter {adapter} is not there")
    return Specialist(
        name=cfg.name or rung.name,
        step=rung.step or cfg.step,
        base_gguf=base,
        adapter_gguf=adapter,
        peft_dir=None,
        params=rung.params,
        n_ctx=rung.n_ctx,
        prompt_format=rung.prompt_format,
        source=f"rung {rung.name!r} of {fleet.source}",
        price_per_second=rung.price_per_second,
    )


def find_specialist(cfg: ExportConfig) -> Specialist:
    """The specialist ``cfg`` names, or one :class:`DistillError` saying what is missing."""
    if (cfg.run_dir is None) == (cfg.rung is None and cfg.step is None):
        raise DistillError("name one specialist: --run DIR, or --fleet with --step or --rung")
    if cfg.rung and cfg.step:
        raise DistillError("pass --step or --rung, not both")
    spec = _from_run(cfg, Path(cfg.run_dir)) if cfg.run_dir is not None else _from_fleet(cfg)
    if not spec.name or any(c.isspace() or c in "=/\\" for c in spec.name):
        raise DistillError(
            f"--name {spec.name!r}: the adapter's name must be non-empty, without spaces, '=' or '/'"
        )
    if spec.prompt_format != "chat_template" or not _has_chat_template(spec.base_gguf):
        raise DistillError(
            f"{spec.source}: the specialist reads a {spec.prompt_format!r} prompt, and serving engines render "
            "the model's chat template; only chat-template specialists can be served with the same prompt"
        )
    return spec


# --------------------------------------------------------------------------- the forms


def vllm_max_lora_rank(rank: int) -> int:
    """The smallest ``--max-lora-rank`` vLLM accepts that holds ``rank``."""
    for r in VLLM_MAX_LORA_RANKS:
        if r >= rank:
            return r
    raise DistillError(f"rank {rank} is above vLLM's largest --max-lora-rank {VLLM_MAX_LORA_RANKS[-1]}")


def _peft_config(rank: int, alpha: float, targets: list[str], base_ref: str) -> dict[str, Any]:
    """What peft's ``LoraConfig`` and vLLM's ``PEFTHelper`` read (the rest takes their defaults).
    ``base_model_name_or_path`` is the exported base directory, or the base GGUF without one."""
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_ref,
        "r": rank,
        "lora_alpha": int(alpha) if float(alpha).is_integer() else alpha,
        "target_modules": targets,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "modules_to_save": None,
        "use_rslora": False,
        "use_dora": False,
        "inference_mode": True,
    }


def _write_peft(pairs: dict[str, Any], config: dict[str, Any], dest: Path) -> dict[str, Any]:
    """``adapter_model.safetensors`` with peft's key names (no adapter name in them, as vLLM's
    ``parse_fine_tuned_lora_name`` wants) and ``adapter_config.json``."""
    import numpy as np
    from safetensors.numpy import save_file

    ranks = {a.shape[0] for a, _ in pairs.values()} | {b.shape[1] for _, b in pairs.values()}
    if ranks != {config["r"]}:
        raise DistillError(
            f"the adapter's matrices have ranks {sorted(ranks)}, its config says r={config['r']}"
        )
    tensors = {}
    for module, (a, b) in sorted(pairs.items()):
        tensors[f"base_model.model.{module}.lora_A.weight"] = np.ascontiguousarray(a)
        tensors[f"base_model.model.{module}.lora_B.weight"] = np.ascontiguousarray(b)
    dest.mkdir(parents=True)
    save_file(tensors, str(dest / PEFT_WEIGHTS), metadata={"format": "pt"})
    (dest / PEFT_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return {"tensors": len(tensors), "rank": config["r"], "alpha": config["lora_alpha"],
            "target_modules": config["target_modules"]}  # fmt: skip


def _peft_from_run(peft_dir: Path, dest: Path, base_ref: str) -> dict[str, Any]:
    """The peft adapter as trained (float32), its config checked against what vLLM refuses."""
    from safetensors.numpy import load_file

    from modelladder.distill.export_gguf import lora_pairs

    try:
        trained = json.loads((peft_dir / PEFT_CONFIG).read_text())
    except ValueError as exc:
        raise DistillError(f"{peft_dir / PEFT_CONFIG} is not JSON: {exc}") from exc
    if trained.get("peft_type") != "LORA":
        raise DistillError(f"{peft_dir} is a {trained.get('peft_type')!r} adapter, not LoRA")
    if trained.get("use_dora") or trained.get("use_rslora"):
        raise DistillError("rsLoRA/DoRA adapters have no llama.cpp equivalent; train a plain LoRA")
    if trained.get("modules_to_save") or trained.get("bias", "none") != "none" or trained.get("lora_bias"):
        raise DistillError(
            f"{peft_dir}: modules_to_save and LoRA biases cannot be served by vLLM or llama.cpp"
        )
    if trained.get("rank_pattern") or trained.get("alpha_pattern"):
        raise DistillError(f"{peft_dir}: per-module ranks/alphas (rank_pattern) cannot be exported")
    pairs = lora_pairs(load_file(str(peft_dir / PEFT_WEIGHTS)))
    targets = sorted({m.rsplit(".", 1)[-1] for m in pairs})
    # only the fields both readers know: older peft refuses keys newer peft writes
    return _write_peft(
        pairs, _peft_config(int(trained["r"]), float(trained["lora_alpha"]), targets, base_ref), dest
    )


def _peft_from_gguf(adapter_gguf: Path, base_gguf: Path, dest: Path, base_ref: str) -> dict[str, Any]:
    from modelladder.distill.export_gguf import read_lora_gguf

    alpha, pairs = read_lora_gguf(adapter_gguf, base_gguf)
    rank = next(iter(pairs.values()))[0].shape[0]
    targets = sorted({m.rsplit(".", 1)[-1] for m in pairs})
    return _write_peft(pairs, _peft_config(rank, alpha, targets, base_ref), dest)


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link where the file system allows (the cache and the export share the bytes;
    nothing rewrites either in place), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _write_hf_base(base_gguf: Path, dest: Path) -> dict[str, Any]:
    """The dequantised float32 base (the weights the adapter was trained against) and its
    tokenizer with the GGUF's chat template, as a transformers directory vLLM can serve."""
    import contextlib
    import io

    from modelladder.distill.hf_base import dequantised_dir, require_training_deps

    require_training_deps()
    from transformers import AutoTokenizer

    src = dequantised_dir(base_gguf)
    dest.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        if f.is_file():
            _link_or_copy(f, dest / f.name)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            tok = AutoTokenizer.from_pretrained(str(base_gguf.parent), gguf_file=base_gguf.name)
    except Exception as exc:  # transformers raises many types for an unsupported GGUF
        raise DistillError(f"transformers cannot read the tokenizer of {base_gguf}: {exc}") from exc
    tok.save_pretrained(str(dest))
    # Readable by older transformers too (vLLM brings its own): the generic fast-tokenizer class
    # rather than transformers 5's name for it, and the chat template inside tokenizer_config.json.
    tc_path = dest / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    jinja = dest / "chat_template.jinja"
    if jinja.is_file():
        tc["chat_template"] = jinja.read_text()
    tc_path.write_text(json.dumps(tc, indent=2) + "\n")
    size = sum(f.stat().st_size for f in dest.iterdir() if f.is_file())
    return {"path": str(dest), "bytes": size, "dtype": "float32"}


# --------------------------------------------------------------------------- commands and docs


def _commands(spec: Specialist, out: Path, cfg: ExportConfig, rank: int) -> dict[str, Any]:
    gguf_base = str(out / GGUF_DIR / "base.gguf") if cfg.with_base else str(spec.base_gguf.resolve())
    adapter = str(out / GGUF_DIR / "adapter.gguf")
    host, port = cfg.host, str(cfg.port)
    llama_cpp_python = [
        "python", "-m", "llama_cpp.server", "--model", gguf_base, "--lora_path", adapter,
        "--model_alias", spec.name, "--host", host, "--port", port, "--n_ctx", str(spec.n_ctx),
        "--last_n_tokens_size", "0",
    ]  # fmt: skip
    llama_server = [
        "llama-server", "-m", gguf_base, "--lora", adapter, "--alias", spec.name,
        "--host", host, "--port", port, "-c", str(spec.n_ctx), "--repeat-penalty", "1.0",
    ]  # fmt: skip
    base_dir = str(out / BASE_DIR) if cfg.with_base else "BASE_DIR"
    vllm = [
        "vllm", "serve", base_dir, "--enable-lora", "--lora-modules", f"{spec.name}={out / PEFT_DIR}",
        "--max-lora-rank", str(vllm_max_lora_rank(rank)), "--host", host, "--port", "8000",
    ]  # fmt: skip
    return {"llama_cpp_python": llama_cpp_python, "llama_server": llama_server, "vllm": vllm}


def _rung(spec: Specialist, cfg: ExportConfig) -> dict[str, Any]:
    rung: dict[str, Any] = {
        "name": f"{spec.name}-served",
        "backend": "openai",
        "url": f"http://{cfg.host}:{cfg.port}/v1",
        "model": spec.name,
        "params": spec.params,
        "placement": "edge",
        "local_prompt": True,  # the prompt the specialist was trained on, not the contract as an API field
    }
    if spec.price_per_second:
        rung["price_per_second"] = spec.price_per_second
    if spec.step:
        rung["step"] = spec.step
    data: dict[str, Any] = {"rung": [rung]}
    if spec.step:
        data["step"] = {spec.step: {"first_rung": rung["name"]}}
    return data


def _readme(serve: dict[str, Any]) -> str:
    c = serve["commands"]
    name, rank = serve["name"], serve["adapter"]["rank"]
    base_note = (
        f"`{BASE_DIR}/` is the dequantised float32 base ({serve['vllm']['base']['bytes'] / 1e6:.0f} MB) with "
        "its tokenizer and chat template."
        if serve["vllm"]["base"]
        else "BASE_DIR is an unquantised transformers copy of the base: rerun the export with `--with-base` "
        "to write one into this directory (float32, about 4 bytes per parameter: "
        f"{serve['params'] * 4 / 1e6:.0f} MB here)."
    )
    return f"""# `{name}`, ready to serve

Exported by `modelladder distill export` from {serve["source"]}
(step `{serve["step"]}`, LoRA rank {rank}, alpha {serve["adapter"]["alpha"]}).

| form | file | engine |
|---|---|---|
| GGUF LoRA adapter | `{GGUF_DIR}/adapter.gguf` | llama.cpp (`llama-server --lora`, `llama_cpp.server --lora_path`) on the base GGUF `{serve["base_gguf"]["path"]}` (sha256 {serve["base_gguf"]["sha256"][:16]}...) |
| PEFT adapter | `{PEFT_DIR}/adapter_model.safetensors`, `{PEFT_DIR}/adapter_config.json` | vLLM (`--enable-lora --lora-modules`), peft |

## llama-cpp-python's server (tested)

```sh
{shlex.join(c["llama_cpp_python"])}
```

Needs `pip install 'llama-cpp-python[server]'`. `--last_n_tokens_size 0` turns off its default
repeat penalty (1.1, which the OpenAI API cannot set), so temperature 0 decodes greedily like
the in-process rung. It keeps one model in memory and serves one request at a time.

## llama.cpp's own server (not run here)

```sh
{shlex.join(c["llama_server"])}
```

## vLLM (not run here: no GPU on the machines this was built on)

```sh
{shlex.join(c["vllm"])}
```

{base_note} The command follows vLLM's LoRA documentation and was not run;
`--max-lora-rank` is the smallest value vLLM accepts that holds rank {rank}. More adapters on
the same base: repeat `--lora-modules NAME=DIR` (and raise `--max-loras`).

## The fleet rung

`{RUNG_TOML}` holds an `openai` rung whose `model` is `{name}` and makes it the step's first
rung; paste it into the fleet file. Its `url` points at the llama.cpp command above; for vLLM
use `http://HOST:8000/v1` (same `model`). `local_prompt = true` sends the prompt the specialist
was trained on (the contract's instructions in the system message) instead of the contract as
`response_format`/`tools`; the server decodes without the contract's grammar, so an answer
that breaks the contract fails validation and the ladder escalates.
"""


# --------------------------------------------------------------------------- the export


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DistillError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise DistillError(f"--out {out} exists and is not empty; pass --force to replace it")


def export_for_serving(cfg: ExportConfig) -> dict[str, Any]:
    """Write the export directory (atomically) and return what ``serve.json`` says."""
    from modelladder.distill.export_gguf import export_adapter, validate_adapter
    from modelladder.distill.fleet_file import dumps_fleet
    from modelladder.distill.hf_base import file_sha256

    out = Path(cfg.out_dir).expanduser().absolute()
    _check_out(out, cfg.force)
    spec = find_specialist(cfg)
    tmp = out.parent / f".{out.name}.export-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as exc:
        raise DistillError(f"cannot write beside --out {out}: {exc.strerror or exc}") from exc
    try:
        (tmp / GGUF_DIR).mkdir()
        gguf_out = tmp / GGUF_DIR / "adapter.gguf"
        if spec.adapter_gguf is not None:
            validate_adapter(spec.adapter_gguf, spec.base_gguf)
            shutil.copyfile(spec.adapter_gguf, gguf_out)
        else:
            assert spec.peft_dir is not None
            export_adapter(spec.peft_dir, spec.base_gguf, gguf_out)
        base_ref = str(out / BASE_DIR) if cfg.with_base else str(spec.base_gguf.resolve())
        if spec.peft_dir is not None:
            adapter = _peft_from_run(spec.peft_dir, tmp / PEFT_DIR, base_ref)
            adapter["from"] = "the peft adapter as trained (float32)"
        else:
            adapter = _peft_from_gguf(gguf_out, spec.base_gguf, tmp / PEFT_DIR, base_ref)
            adapter["from"] = "converted from the GGUF adapter (f16 weights)"
        hf_base = None
        if cfg.with_base:
            hf_base = _write_hf_base(spec.base_gguf, tmp / BASE_DIR)
            hf_base["path"] = str(out / BASE_DIR)
            _link_or_copy(spec.base_gguf, tmp / GGUF_DIR / "base.gguf")
        serve: dict[str, Any] = {
            "name": spec.name,
            "step": spec.step,
            "source": spec.source,
            "params": spec.params,
            "base_gguf": {"path": str(spec.base_gguf.resolve()), "sha256": file_sha256(spec.base_gguf)},
            "adapter": adapter,
            "llamacpp": {"adapter": f"{GGUF_DIR}/adapter.gguf",
                         "base_gguf": f"{GGUF_DIR}/base.gguf" if cfg.with_base else str(spec.base_gguf.resolve())},
            "vllm": {"peft_dir": PEFT_DIR, "base": hf_base, "verified": False},
            "commands": _commands(spec, out, cfg, int(adapter["rank"])),
            "fleet": _rung(spec, cfg),
        }  # fmt: skip
        (tmp / SERVE_JSON).write_text(json.dumps(serve, indent=2) + "\n")
        header = [f"# `modelladder distill export` of {spec.name}: the specialist behind an OpenAI-compatible",
                  f"# server ({README}). Paste into the fleet file."]  # fmt: skip
        (tmp / RUNG_TOML).write_text(dumps_fleet(serve["fleet"], header))
        (tmp / README).write_text(_readme(serve))
        _check_out(out, cfg.force)  # nobody wrote there meanwhile
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        moved = out.is_dir() and any(out.iterdir())
        if moved:
            os.replace(out, old)
        try:
            os.replace(tmp, out)
        except OSError:
            if moved:
                os.replace(old, out)  # the previous export stays as it was
            raise
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DistillError(f"cannot write the export to {out}: {exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return serve
