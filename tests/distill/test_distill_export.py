"""Export round trip: a peft LoRA adapter, exported to GGUF and loaded by llama.cpp on the
unchanged Q4_1 base, makes the same next-token choices as transformers + peft."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

import llama_cpp  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402

from modelladder.backends.adapters import set_adapter  # noqa: E402
from modelladder.backends.base import GenerationParams  # noqa: E402
from modelladder.backends.llamacpp import LlamaCppBackend, load_model  # noqa: E402
from modelladder.backends.prompt_cache import PrefixLRU  # noqa: E402
from modelladder.distill.errors import DistillError  # noqa: E402
from modelladder.distill.export_gguf import export_adapter, llama_permute, validate_adapter  # noqa: E402
from modelladder.distill.hf_base import load_base  # noqa: E402
from modelladder.distill.train import LORA_TARGETS  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.usefixtures("distill_cache")]

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    return",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "Once upon a time, there was a",
    "The weather today in Berkeley is",
    "import numpy as",
    '<tool_call>[{"name": "get_weather", "arguments": {"city": "',
    "1, 2, 3, 4,",
]


@pytest.fixture(scope="module")
def lora(tmp_path_factory: pytest.TempPathFactory, smol_path: Path) -> tuple[object, Path]:
    """A LoRA on every projection with random (non-zero) B, so it visibly moves the logits."""
    torch.manual_seed(0)
    model = get_peft_model(
        load_base(smol_path), LoraConfig(r=8, lora_alpha=16, target_modules=list(LORA_TARGETS))
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.15)
    model.eval()
    out = tmp_path_factory.mktemp("lora")
    model.save_pretrained(str(out / "adapter"))
    export_adapter(out / "adapter", smol_path, out / "adapter.gguf")
    return model, out / "adapter.gguf"


def test_gguf_metadata_and_tensor_names(lora: tuple[object, Path], smol_path: Path) -> None:
    _, path = lora
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    alpha = reader.fields["adapter.lora.alpha"]
    assert alpha.contents() == 16.0 and alpha.types == [gguf.GGUFValueType.FLOAT32]
    shapes = {t.name: tuple(int(x) for x in t.shape) for t in reader.tensors}
    assert len(shapes) == 30 * 7 * 2
    # ggml order (ne0, ne1): lora_a (in, rank), lora_b (rank, out) -- as llama.cpp checks them
    assert shapes["blk.0.attn_q.weight.lora_a"] == (576, 8)
    assert shapes["blk.0.attn_q.weight.lora_b"] == (8, 576)
    assert shapes["blk.29.attn_k.weight.lora_b"] == (8, 192)
    assert shapes["blk.3.ffn_down.weight.lora_a"] == (1536, 8)
    assert 4_000_000 < path.stat().st_size < 6_000_000  # rank-8 f16 adapter for SmolLM2: ~5 MB
    validate_adapter(path, smol_path)  # what `distill eval` checks before llama.cpp sees the file
    with pytest.raises(DistillError, match="not a GGUF LoRA adapter"):
        validate_adapter(smol_path, smol_path)


def test_llamacpp_adapter_reproduces_transformers_lora(lora: tuple[object, Path], smol_path: Path) -> None:
    model, path = lora
    loaded = load_model(smol_path, n_ctx=512)
    llm = loaded.llm

    def ll_logits(ids: list[int]) -> np.ndarray:
        llm.n_tokens = 0
        llm.eval(ids)
        return np.ctypeslib.as_array(
            llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(loaded.n_vocab,)
        ).copy()

    agree = changed = clear = 0
    try:
        for prompt in PROMPTS:
            ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
            with torch.no_grad():
                hf_lora = model(torch.tensor([ids])).logits[0, -1].numpy()
                with model.disable_adapter():
                    hf_base = model(torch.tensor([ids])).logits[0, -1].numpy()
            set_adapter(loaded, None)
            ll_base = ll_logits(ids)
            set_adapter(loaded, str(path))
            ll_lora = ll_logits(ids)
            # the adapter's effect on the logits is the same effect in both engines
            assert np.corrcoef(hf_lora - hf_base, ll_lora - ll_base)[0, 1] > 0.9, prompt
            top2 = np.sort(hf_lora)[-2:]
            if top2[1] - top2[0] > 0.5:  # a clear choice (not a near tie that Q8 activations can flip)
                clear += 1
                agree += int(ll_lora.argmax() == hf_lora.argmax())
            changed += int(hf_lora.argmax() != hf_base.argmax())
    finally:
        set_adapter(loaded, None)
    assert clear >= 5 and agree == clear
    assert changed >= 2  # the adapter really changes next-token choices


def test_permutation_matches_llamacpp_convention() -> None:
    """The Q/K row permutation (on the output dimension), checked on a readable example."""
    rows = np.arange(8).reshape(8, 1)  # 2 heads of 4 rows: [0,1,2,3] -> [0,2,1,3]
    assert llama_permute(rows, 2).ravel().tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_export_refuses_what_llamacpp_cannot_load(tmp_path: Path, smol_path: Path) -> None:
    with pytest.raises(DistillError, match="not a peft adapter"):
        export_adapter(tmp_path, smol_path, tmp_path / "x.gguf")
    (tmp_path / "adapter_config.json").write_text('{"r": 8, "lora_alpha": 16, "use_dora": true}')
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(DistillError, match="DoRA"):
        export_adapter(tmp_path, smol_path, tmp_path / "x.gguf")


def test_eval_refuses_an_adapter_llamacpp_cannot_load(tmp_path: Path, smol_path: Path) -> None:
    from modelladder.distill.dataset import DatasetConfig, build_dataset
    from modelladder.distill.evaluate import EvalConfig, evaluate
    from modelladder.traces import TraceStore
    from tests.support.distill import FixedSource, questions, record

    store = TraceStore(":memory:")
    record(store, questions(30))
    build_dataset(
        DatasetConfig(step="route", out_dir=tmp_path / "ds", holdout=0.5, min_train=2),
        store=store,
        source=FixedSource(),
    )
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        f'[[rung]]\nname = "smollm2-135m"\nbackend = "llamacpp"\npath = "{smol_path}"\nparams = 135000000\n'
    )
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(DistillError, match="candidate cannot run"):
        evaluate(
            EvalConfig(
                data_dir=tmp_path / "ds",
                fleet_path=fleet,
                adapter=junk,
                out=tmp_path / "e.json",
                progress=False,
            )
        )


def test_the_prompt_cache_never_restores_a_state_across_adapters(
    lora: tuple[object, Path], smol_path: Path
) -> None:
    """A state computed under the adapter is never restored for the base model, nor the
    reverse; each comes back under its own, with the same output as without a cache."""
    _, path = lora
    loaded = load_model(smol_path, n_ctx=1536)
    loaded.prompt_cache = PrefixLRU(budget_bytes=0)
    base = LlamaCppBackend("base", loaded, prompt_cache_mb=64)
    tuned = LlamaCppBackend("tuned", loaded, adapter=str(path), prompt_cache_mb=64)
    facts = " ".join(f"Item {i} costs {i * 3} euros." for i in range(60))
    messages = [{"role": "system", "content": facts}, {"role": "user", "content": "What does item 7 cost?"}]
    params = GenerationParams(max_tokens=12)
    try:
        first = [g.generate(messages, None, params) for g in (base, tuned)]
        assert first[1].raw["prompt_cache"]["restored"] == 0  # the base state was not reused
        again = [g.generate(messages, None, params) for g in (base, tuned)]
        assert all(g.raw["prompt_cache"]["restored"] > 0 for g in again)  # each got its own back
        assert [g.text for g in again] == [g.text for g in first]
        assert {e.adapter for e in loaded.prompt_cache._entries.values()} == {None, str(path)}
    finally:
        set_adapter(loaded, None)
