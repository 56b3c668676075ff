"""Memory of N specialists: one resident base + N LoRA adapters vs N separate models.

* ``shared``   -- what the ladder does: the ``llamacpp`` backend's one loaded SmolLM2
  (:func:`load_model`) and N rank-8 f16 GGUF adapters, each activated per request with
  :func:`set_adapter`, one short generation on each.
* ``separate`` -- the alternative: N specialist models, each its own GGUF file (a merged
  specialist is a different file; here N copies of the base stand in for them), each loaded
  by the backend's :func:`load_model` as a rung would, one short generation on each.

Each configuration runs in a fresh process; the figure is that process's peak resident
memory (VmHWM). Same context size (2048) and threads in both. Also measured: the time to
switch the active adapter, and decode speed with and without an adapter.

    .venv/bin/python benchmarks/adapter_memory.py --n 1 2 4 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

N_CTX = 2048
PROMPT = "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n"


def smol_path() -> Path:
    from modelladder.fleet import load_fleet

    return load_fleet().rungs[0].resolve_path()


def make_adapters(base: Path, n: int, out: Path, rank: int = 8) -> list[Path]:
    """N random rank-8 f16 adapters for every projection of the base (peft's layout)."""
    from modelladder.distill.export_gguf import BaseInfo, write_lora_gguf

    info = BaseInfo(base)
    names = [
        t
        for t in info.shapes
        if t.endswith(".weight")
        and t.startswith("blk.")
        and any(
            k in t for k in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
        )
    ]
    paths = []
    for i in range(n):
        rng = np.random.default_rng(i)
        tensors = []
        for name in sorted(names):
            n_in, n_out = info.shapes[name]
            tensors.append((name + ".lora_a", (rng.standard_normal((rank, n_in)) * 0.02).astype(np.float16)))
            tensors.append((name + ".lora_b", (rng.standard_normal((n_out, rank)) * 0.02).astype(np.float16)))
        p = out / f"specialist-{i}.gguf"
        write_lora_gguf(p, info.arch, 16.0, tensors, f"benchmark adapter {i}")
        paths.append(p)
    return paths


def peak_rss_mb() -> tuple[float, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        fields[k] = v.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def generate(llm: object, n_tokens: int = 16) -> float:
    """Greedy decode of ``n_tokens`` after the prompt; returns tokens per second."""
    ids = llm.tokenize(PROMPT.encode(), add_bos=False, special=True)  # type: ignore[attr-defined]
    llm.reset()  # type: ignore[attr-defined]
    llm.eval(ids)  # type: ignore[attr-defined]
    import llama_cpp

    n_vocab = llm.n_vocab()  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    for _ in range(n_tokens):
        ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)  # type: ignore[attr-defined]
        tok = int(np.argmax(np.ctypeslib.as_array(ptr, shape=(n_vocab,))))
        llm.eval([tok])  # type: ignore[attr-defined]
    return n_tokens / (time.perf_counter() - t0)


def worker_shared(base: Path, adapters: list[Path]) -> dict[str, object]:
    from modelladder.backends.adapters import set_adapter
    from modelladder.backends.llamacpp import load_model

    model = load_model(base, N_CTX)
    plain_tps = generate(model.llm)
    tps = []
    for p in adapters:
        set_adapter(model, str(p))
        tps.append(generate(model.llm))
    switches = []
    for i in range(200):
        t0 = time.perf_counter()
        set_adapter(model, str(adapters[i % len(adapters)]) if i % 3 else None)
        switches.append(time.perf_counter() - t0)
    rss, hwm = peak_rss_mb()
    return {
        "rss_mb": rss,
        "peak_rss_mb": hwm,
        "decode_tps_base": plain_tps,
        "decode_tps_adapter": statistics.fmean(tps),
        "switch_us_p50": 1e6 * statistics.median(switches),
        "switch_us_max": 1e6 * max(switches),
    }


def worker_separate(files: list[Path]) -> dict[str, object]:
    """N specialist models as N rungs would hold them: one :func:`load_model` per GGUF file
    (model, context, llguidance tokenizer each)."""
    from modelladder.backends.llamacpp import load_model

    for f in files:
        generate(load_model(f, N_CTX).llm)
    rss, hwm = peak_rss_mb()
    return {"rss_mb": rss, "peak_rss_mb": hwm}


def run_worker(kind: str, n: int, workdir: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--n", str(n), "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--worker", choices=["shared", "separate"], default=None)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    base = smol_path()
    if args.worker:
        n = args.n[0]
        if args.worker == "shared":
            res = worker_shared(base, sorted(args.workdir.glob("specialist-*.gguf"))[:n])
        else:
            res = worker_separate(sorted(args.workdir.glob("copy-*.gguf"))[:n])
        print(json.dumps(res))
        return

    n_max = max(args.n)
    with tempfile.TemporaryDirectory(prefix="adapter-memory-") as tmp:
        work = Path(tmp)
        adapters = make_adapters(base, n_max, work)
        for i in range(n_max):
            shutil.copyfile(base, work / f"copy-{i}.gguf")
        rows = []
        for n in args.n:
            shared = run_worker("shared", n, work)
            separate = run_worker("separate", n, work)
            rows.append({"n": n, "shared": shared, "separate": separate})
            print(
                f"N={n}: shared {shared['peak_rss_mb']:.0f} MB, separate {separate['peak_rss_mb']:.0f} MB",
                flush=True,
            )
        adapter_mb = adapters[0].stat().st_size / 2**20
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "cpu": _cpu(), "python": platform.python_version()},
        "base": base.name,
        "base_mb": base.stat().st_size / 2**20,
        "adapter_mb": adapter_mb,
        "n_ctx": N_CTX,
        "rows": rows,
    }
    print("\n| specialists | one base + N adapters (peak RSS) | N separate models (peak RSS) |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['n']} | {r['shared']['peak_rss_mb']:.0f} MB | {r['separate']['peak_rss_mb']:.0f} MB |")
    last = rows[-1]["shared"]
    print(
        f"\nadapter file {adapter_mb:.1f} MB; switch p50 {last['switch_us_p50']:.0f} us (max "
        f"{last['switch_us_max']:.0f} us); decode tokens/s (bare / with an adapter, only meaningful on an "
        f"otherwise idle machine) {last['decode_tps_base']:.1f} / {last['decode_tps_adapter']:.1f}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()
