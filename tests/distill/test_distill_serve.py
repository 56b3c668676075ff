"""``distill export``: a distilled specialist in the forms serving engines load, checked by
loading each form with the engine (or library) that reads it.

* The PEFT form is what ``peft.PeftModel.from_pretrained`` loads onto the exported base (the
  directory vLLM would serve): same logits as the adapter in process.
* The GGUF form runs behind llama-cpp-python's OpenAI-compatible server (``--lora_path``) as a
  fleet rung of backend ``openai`` whose ``model`` is the adapter's name: same answers, through
  the ladder, as the in-process ``llamacpp`` specialist -- and different from the bare base, so
  the adapter is really applied.

Needs the ``distill`` extra and llama-cpp-python's ``server`` extra.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("transformers")
pytest.importorskip("gguf")
pytest.importorskip("llama_cpp.server")

from click.testing import CliRunner  # noqa: E402
from peft import PeftModel  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

import modelladder.cli.distill_cmd  # noqa: E402,F401  (registers `distill`)
from modelladder.backends import open_backend  # noqa: E402
from modelladder.backends.prompting import prepare_messages  # noqa: E402
from modelladder.cli import main  # noqa: E402
from modelladder.contracts import Choice  # noqa: E402
from modelladder.distill.dataset import DatasetConfig, build_dataset  # noqa: E402
from modelladder.distill.export_gguf import llama_permute, llama_unpermute  # noqa: E402
from modelladder.distill.hf_base import load_base  # noqa: E402
from modelladder.distill.train import TrainConfig, train  # noqa: E402
from modelladder.fleet import parse_fleet  # noqa: E402
from modelladder.ladder import Ladder, Resolved, Step  # noqa: E402
from modelladder.traces import TraceStore  # noqa: E402
from tests.support.distill import FixedSource, record, scripted  # noqa: E402
from tests.support.llama_server import running_llama_server  # noqa: E402
from tests.support.models import SMOL, free_port  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.usefixtures("distill_cache")]

LABELS = ["zorblax", "quimble"]
MOOD = Step("mood", Choice(LABELS))
WORDS = ["movie", "dinner", "concert", "trip", "book", "game", "hotel", "class"]
NEW = ["The soup was good.", "The museum was bad.", "The bus ride was good."]


def label_for(q: str) -> str:
    return "zorblax" if " good" in q else "quimble"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, smol_path: Path) -> Path:
    """A tiny specialist, distilled for real: traces -> dataset -> LoRA -> GGUF adapter."""
    root = tmp_path_factory.mktemp("serve")
    store = TraceStore(":memory:")
    qs = [f"The {w} was {'good' if i % 2 else 'bad'}." for i, w in enumerate(WORDS)]
    backends = {"small": scripted("small", lambda q: "not a label"), "big": scripted("big", label_for)}
    record(store, qs, step=MOOD, backends=backends)
    build_dataset(
        DatasetConfig(step="mood", out_dir=root / "ds", holdout=0.2, min_train=4),
        store=store,
        source=FixedSource(MOOD),
    )
    cfg = TrainConfig(
        data_dir=root / "ds",
        out_dir=root / "run",
        base_gguf=smol_path,
        rank=4,
        alpha=8.0,
        lr=3e-3,
        epochs=3.0,
        grad_accum=2,
        checkpoint_every=100,
        progress=False,
        limit=6,
    )
    train(cfg)
    return root / "run"


def prompts() -> list[list[dict[str, str]]]:
    """The prompt the specialist was trained on (the contract's instructions in the system
    message), for inputs it saw and inputs it did not."""
    qs = ["The movie was bad.", "The dinner was good.", *NEW]
    return [prepare_messages([{"role": "user", "content": q}], MOOD.contract) for q in qs]


def export(args: list[str]) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["distill", "export", *args])
    return res.exit_code, res.output


def test_unpermute_inverts_the_llamacpp_permutation() -> None:
    rows = np.arange(24 * 3).reshape(24, 3)
    for heads in (1, 2, 3, 6):
        assert (llama_unpermute(llama_permute(rows, heads), heads) == rows).all()


def test_export_from_a_run_loads_in_peft_like_the_trained_adapter(
    run_dir: Path, smol_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    code, output = export(["--run", str(run_dir), "--out", str(out), "--with-base", "--name", "mood-v1"])
    assert code == 0, output
    serve = json.loads((out / "serve.json").read_text())
    assert serve["name"] == "mood-v1" and serve["step"] == "mood" and serve["adapter"]["rank"] == 4
    assert (out / "llamacpp" / "adapter.gguf").read_bytes() == (run_dir / "adapter.gguf").read_bytes()
    assert (out / "llamacpp" / "base.gguf").stat().st_size == smol_path.stat().st_size

    # the PEFT form: the keys and config fields vLLM's loader and peft read
    config = json.loads((out / "peft" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    assert (
        config["r"] == 4
        and config["lora_alpha"] == 8
        and config["base_model_name_or_path"] == str(out / "base")
    )
    assert sorted(config["target_modules"]) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    keys = set(load_file(str(out / "peft" / "adapter_model.safetensors")))
    assert len(keys) == 30 * 7 * 2
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in keys
    assert all(k.endswith((".lora_A.weight", ".lora_B.weight")) for k in keys)

    # the commands and the rung
    c = serve["commands"]
    assert c["vllm"][:3] == ["vllm", "serve", str(out / "base")]
    assert f"mood-v1={out / 'peft'}" in c["vllm"] and c["vllm"][c["vllm"].index("--max-lora-rank") + 1] == "8"
    assert c["llama_cpp_python"][c["llama_cpp_python"].index("--lora_path") + 1] == str(
        out / "llamacpp" / "adapter.gguf"
    )
    readme = (out / "README.md").read_text()
    assert "vllm serve" in readme and "not run here" in readme and "--lora_path" in readme
    rung_data = tomllib.loads((out / "fleet-rung.toml").read_text())
    fleet = parse_fleet(rung_data)
    (rung,) = fleet.rungs
    assert rung.backend == "openai" and rung.model == "mood-v1" and rung.step == "mood"
    assert fleet.policy_for("mood").first_rung == rung.name

    # the tokenizer vLLM would use renders the in-process prompt, token for token
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelladder.backends.llamacpp import LlamaCppBackend, load_model

    tok = AutoTokenizer.from_pretrained(str(out / "base"))
    local = LlamaCppBackend("x", load_model(smol_path, n_ctx=2048))
    for messages in prompts()[:2]:
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        assert ids["input_ids"] == list(local.render(messages, None)[0])

    # peft loads the exported base + adapter; logits equal the trained adapter's in process
    served = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(str(out / "base"), dtype=torch.float32), str(out / "peft")
    ).eval()
    trained = PeftModel.from_pretrained(load_base(smol_path), str(run_dir / "adapter")).eval()
    moved = 0.0
    for messages in prompts()[:3]:
        ids = torch.tensor([list(local.render(messages, None)[0])])
        with torch.no_grad():
            a = served(ids).logits[0, -1]
            b = trained(ids).logits[0, -1]
            with trained.disable_adapter():
                bare = trained(ids).logits[0, -1]
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        moved = max(moved, float((b - bare).abs().max()))
    assert moved > 1.0  # the adapter moves the logits: the comparison above is not of two bare bases


def test_export_from_the_fleet_converts_the_gguf_back_to_peft(
    run_dir: Path, smol_path: Path, tmp_path: Path
) -> None:
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        f'[[rung]]\nname = "smol"\nbackend = "llamacpp"\npath = "{smol_path}"\nparams = 135000000\n\n'
        f'[[rung]]\nname = "smol+mood-v1"\nbackend = "llamacpp"\npath = "{smol_path}"\nparams = 135000000\n'
        f'adapter = "{run_dir / "adapter.gguf"}"\nstep = "mood"\n\n[step.mood]\nfirst_rung = "smol+mood-v1"\n'
    )
    out = tmp_path / "export"
    code, output = export(["--fleet", str(fleet), "--step", "mood", "--out", str(out)])
    assert code == 0, output
    serve = json.loads((out / "serve.json").read_text())
    assert serve["name"] == "smol+mood-v1" and serve["vllm"]["base"] is None
    assert "BASE_DIR" in serve["commands"]["vllm"] and "--with-base" in (out / "README.md").read_text()
    # every matrix, back from f16 GGUF with the Q/K rows un-permuted, equals the trained one
    got = load_file(str(out / "peft" / "adapter_model.safetensors"))
    want = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=2e-3, atol=2e-5, err_msg=k)
    # and peft loads it
    model = PeftModel.from_pretrained(load_base(smol_path), str(out / "peft"))
    assert model.peft_config["default"].r == 4


def test_bad_input_is_one_error_and_writes_nothing(run_dir: Path, smol_path: Path, tmp_path: Path) -> None:
    code, output = export(["--run", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])
    assert code == 2 and "no trained specialist" in output and not (tmp_path / "x").exists()
    code, output = export(["--out", str(tmp_path / "x")])
    assert code == 2 and "name one specialist" in output

    fleet = tmp_path / "fleet.toml"
    fleet.write_text(f'[[rung]]\nname = "smol"\nbackend = "llamacpp"\npath = "{smol_path}"\nparams = 1\n')
    code, output = export(["--fleet", str(fleet), "--step", "mood", "--out", str(tmp_path / "x")])
    assert code == 2 and "is not a specialist" in output

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    code, output = export(["--run", str(run_dir), "--out", str(taken)])
    assert code == 2 and "not empty; pass --force" in output
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    code, output = export(["--run", str(run_dir), "--out", str(blocked / "sub")])
    assert code == 2 and "cannot write" in output
    assert output.count("error:") == 1

    code, output = export(["--run", str(run_dir), "--out", str(taken), "--force"])
    assert code == 0, output
    assert sorted(p.name for p in taken.iterdir()) == [
        "README.md", "fleet-rung.toml", "llamacpp", "peft", "serve.json",
    ]  # fmt: skip
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


@contextlib.contextmanager
def llama_cpp_server(argv: list[str], log: Path) -> Iterator[str]:
    """The exported command, run: llama-cpp-python's server with the GGUF adapter."""
    cmd = [sys.executable, *argv[1:], "--n_threads", "2"]
    port = argv[argv.index("--port") + 1]
    base = f"http://127.0.0.1:{port}/v1"
    with running_llama_server(cmd, base, log) as url:
        yield url


@pytest.mark.server
def test_the_served_specialist_answers_like_the_in_process_one(
    run_dir: Path, smol_path: Path, tmp_path: Path
) -> None:
    """The exported command and rung, run: the same answers through the ladder as the
    in-process specialist, greedy, on the step itself (the served rung's ``local_prompt``
    sends the prompt it was trained on; the server decodes without the grammar) and as free
    text on the same prompt (what the adapter itself decodes, with no grammar on either side).
    Equal answers and equal prompt lengths say the server read the same prompt and applied the
    same adapter; the bare base answers differently, so the adapter is really applied."""
    out = tmp_path / "export"
    code, output = export(["--run", str(run_dir), "--out", str(out), "--port", str(free_port())])
    assert code == 0, output
    serve = json.loads((out / "serve.json").read_text())
    rung_data = tomllib.loads((out / "fleet-rung.toml").read_text())
    served_fleet = parse_fleet(rung_data)
    assert served_fleet.rungs[0].model == serve["name"] == "mood-specialist"
    assert served_fleet.rungs[0].local_prompt
    plain = {**rung_data["rung"][0], "local_prompt": False}
    plain_fleet = parse_fleet({"rung": [plain], "step": rung_data["step"]})
    local_fleet = parse_fleet(
        {
            "rung": [{**SMOL, "name": "smol+mood", "adapter": str(run_dir / "adapter.gguf"), "step": "mood"}],
            "step": {"mood": {"first_rung": "smol+mood"}},
        }
    )
    bare_fleet = parse_fleet({"rung": [dict(SMOL)]})
    free = Step("mood", None, max_tokens=16)  # free text, under the specialist's step name
    inputs = ["The movie was bad.", "The dinner was good.", *NEW]

    def answers(ladder: Ladder, step: Step, prepared: bool, resolves: bool = True) -> list[tuple[str, int]]:
        got = []
        for q in inputs:
            messages = [{"role": "user", "content": q}]
            if prepared:  # the specialist's training prompt, sent as a free-text step
                messages = prepare_messages(messages, MOOD.contract)
            r = ladder.run(step, messages)
            assert isinstance(r, Resolved) or not resolves, r
            got.append((r.attempts[0].text.strip(), r.attempts[0].prompt_tokens))
        return got

    local = [answers(Ladder(local_fleet), s, s is free) for s in (MOOD, free)]
    bare = answers(Ladder(bare_fleet), free, True)
    served_backend, plain_backend = (open_backend(f.rungs[0]) for f in (served_fleet, plain_fleet))
    with llama_cpp_server(serve["commands"]["llama_cpp_python"], tmp_path / "server.log"):
        try:
            ladder = Ladder(served_fleet, backends={served_fleet.rungs[0].name: served_backend})
            served = [answers(ladder, s, s is free) for s in (MOOD, free)]
            ladder = Ladder(plain_fleet, backends={plain_fleet.rungs[0].name: plain_backend})
            plain_answers = answers(ladder, MOOD, False, resolves=False)
        finally:
            for b in (served_backend, plain_backend):
                b.close()  # type: ignore[attr-defined]
    assert served == local, (served, local)
    assert {t for t, _ in local[0]} <= set(LABELS)  # the step's answers: valid labels
    assert [t for t, _ in local[1]] != [t for t, _ in bare], (local, bare)  # the adapter changes answers
    assert {t for t, _ in local[1]} & set(LABELS)  # it learned the step's labels
    # without local_prompt the server is sent the contract as an API field, not the trained prompt
    assert all(n != local[0][i][1] for i, (_, n) in enumerate(plain_answers)), plain_answers
