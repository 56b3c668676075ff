"""``distill train`` and the GGUF export, on the real bundled SmolLM2 (tiny runs: a few
short examples, a few steps). Needs the ``distill`` extra."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("transformers")
pytest.importorskip("gguf")

from click.testing import CliRunner  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import modelladder.cli.distill_cmd  # noqa: E402,F401  (registers `distill`)
from modelladder.cli import main  # noqa: E402
from modelladder.contracts import Choice  # noqa: E402
from modelladder.distill.dataset import TRAIN, DatasetConfig, build_dataset, read_jsonl  # noqa: E402
from modelladder.distill.errors import DistillError  # noqa: E402
from modelladder.distill.train import CKPT_DIR, TrainConfig, train  # noqa: E402
from modelladder.ladder import Step  # noqa: E402
from modelladder.traces import TraceStore  # noqa: E402
from tests.support.distill import FixedSource, record, scripted  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.usefixtures("distill_cache")]

LABELS = ["zorblax", "quimble"]
MOOD = Step("mood", Choice(LABELS))
WORDS = [
    "movie",
    "dinner",
    "concert",
    "trip",
    "book",
    "game",
    "hotel",
    "class",
    "flight",
    "party",
    "show",
    "walk",
]


def label_for(q: str) -> str:
    return "zorblax" if " good" in q else "quimble"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "ds"
    store = TraceStore(":memory:")
    qs = [f"The {w} was {'good' if i % 2 else 'bad'}." for i, w in enumerate(WORDS)]
    backends = {"small": scripted("small", lambda q: "not a label"), "big": scripted("big", label_for)}
    record(store, qs, step=MOOD, backends=backends)
    build_dataset(
        DatasetConfig(step="mood", out_dir=out, holdout=0.2, min_train=4),
        store=store,
        source=FixedSource(MOOD),
    )
    return out


def cfg(data: Path, out: Path, smol_path: Path, **kw: object) -> TrainConfig:
    base: dict = dict(
        data_dir=data,
        out_dir=out,
        base_gguf=smol_path,
        rank=4,
        alpha=8.0,
        lr=3e-3,
        epochs=2.0,
        grad_accum=2,
        checkpoint_every=2,
        progress=False,
        limit=4,
        export=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_tiny_training_run_loss_falls(tiny_data: Path, smol_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = CliRunner().invoke(
        main,
        [
            "distill",
            "train",
            "--data",
            str(tiny_data),
            "--out",
            str(out),
            "--base",
            str(smol_path),
            "--rank",
            "4",
            "--alpha",
            "8",
            "--lr",
            "3e-3",
            "--epochs",
            "3",
            "--grad-accum",
            "2",
            "--limit",
            "4",
            "--seed",
            "1",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads((out / "train_report.json").read_text())
    losses = report["losses"]
    assert report["optimizer_steps"] == report["total_steps"] == 6
    assert np.mean(losses[-2:]) < 0.5 * np.mean(losses[:2]), losses
    assert report["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert report["examples"] == 4 and report["answer_tokens"] > 0
    gguf = out / "adapter.gguf"
    assert gguf.is_file() and 100_000 < gguf.stat().st_size < 10_000_000
    assert report["gguf"]["tensors"] == 30 * 7 * 2


def test_resume_gives_the_same_adapter(tiny_data: Path, smol_path: Path, tmp_path: Path) -> None:
    whole = train(cfg(tiny_data, tmp_path / "whole", smol_path))
    first = train(cfg(tiny_data, tmp_path / "split", smol_path, max_minutes=0.0))
    assert first.report["stopped_early"] and first.report["optimizer_steps"] == 1
    second = train(cfg(tiny_data, tmp_path / "split", smol_path))
    assert second.report["resumed_from_step"] == 1
    assert second.report["optimizer_steps"] == whole.report["optimizer_steps"]
    a = load_file(str(whole.adapter_dir / "adapter_model.safetensors"))
    b = load_file(str(second.adapter_dir / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


def test_bad_checkpoints_and_settings(tiny_data: Path, smol_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(cfg(tiny_data, out, smol_path, epochs=1.0))
    with pytest.raises(DistillError, match="different run .*lr"):
        train(cfg(tiny_data, out, smol_path, epochs=1.0, lr=1e-3))
    latest = sorted((out / CKPT_DIR).iterdir())[-1]
    (latest / "adapter.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(DistillError, match="is corrupt"):
        train(cfg(tiny_data, out, smol_path, epochs=1.0))
    res = CliRunner().invoke(
        main,
        [
            "distill",
            "train",
            "--data",
            str(tiny_data),
            "--out",
            str(out),
            "--base",
            str(smol_path),
            "--rank",
            "4",
            "--alpha",
            "8",
            "--lr",
            "3e-3",
            "--epochs",
            "1",
            "--grad-accum",
            "2",
            "--limit",
            "4",
            "--no-progress",
            "--checkpoint-every",
            "2",
        ],
    )
    assert res.exit_code == 2 and "is corrupt" in res.output
    fresh = train(cfg(tiny_data, out, smol_path, epochs=1.0, fresh=True))
    assert fresh.report["resumed_from_step"] is None
    res = CliRunner().invoke(
        main,
        [
            "distill",
            "train",
            "--data",
            str(tmp_path / "nowhere"),
            "--out",
            str(out),
            "--base",
            str(smol_path),
        ],
    )
    assert res.exit_code == 2 and "no dataset" in res.output


def test_training_prompt_is_the_runtime_prompt(tiny_data: Path, smol_path: Path) -> None:
    """The trainer's tokens == what the llamacpp backend feeds the model, + answer + <|im_end|>."""
    from modelladder.backends.llamacpp import LlamaCppBackend, load_model
    from modelladder.distill.prompt import PromptFormat

    line = read_jsonl(tiny_data / TRAIN)[0]
    prompt, answer = PromptFormat(smol_path).example_ids(line["messages"])
    backend = LlamaCppBackend("x", load_model(smol_path))
    runtime, _ = backend.render(MOOD.with_system(line["metadata"]["input"]), MOOD.contract)
    assert prompt == list(runtime)
    llm = backend.model.llm
    assert llm.detokenize(answer, special=True).decode() == line["messages"][-1]["content"] + "<|im_end|>"


def test_threads_and_precision_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelladder.distill import train as train_mod

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    assert train_mod._threads(None) == 2
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 3.0, 3.0))
    assert train_mod._threads(None) == 1  # a busy machine: one thread beats two that wait on each other
    assert train_mod._threads(4) == 4
    assert train_mod._precision("fp32", "cpu") == "fp32"
    assert train_mod._precision("auto", "cpu") in ("fp32", "bf16")
    with pytest.raises(DistillError, match="--precision"):
        TrainConfig(data_dir=Path("."), out_dir=Path("."), base_gguf=Path("."), precision="fp8").check()
