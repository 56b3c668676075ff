"""bench agent without a model: loader, safe executor, step scores, closed loops against BFCL's
official checker, the runner with the reference oracle (resume, online order, traces), CLI errors."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("bfcl_eval")

from click.testing import CliRunner  # noqa: E402

from modelladder.bench.agent.data import CATEGORIES, load_agent_items  # noqa: E402
from modelladder.bench.agent.execute import CallParseError, ToolEnv, parse_call  # noqa: E402
from modelladder.bench.agent.loops import official_check, run_loop  # noqa: E402
from modelladder.bench.agent.online import OnlineLearner  # noqa: E402
from modelladder.bench.agent.runner import AgentConfig, run_agent, select_items  # noqa: E402
from modelladder.bench.agent.steps import iter_steps, score_step  # noqa: E402
from modelladder.bench.config import BenchInputError  # noqa: E402


def _gold_calls(case):
    named = case.gold_arguments
    return [] if named is None else [{"name": named[0], "arguments": named[1]}]


def _gold_ask(hop):
    return [{"name": n, "arguments": a} for n, a in hop.gold_rest], {}


@pytest.mark.parametrize("category", CATEGORIES)
def test_gold_scores_100_percent_on_every_step(category):
    items = load_agent_items(category)
    assert len(items) == 200
    n = ends = 0
    for item in items:
        for case in iter_steps(item):
            s = score_step(case, _gold_calls(case))
            assert s["name_ok"] and s["exact_ok"] and s["exec_ok"], (case.id, case.gold, s)
            n += 1
            ends += case.gold is None
    assert ends == sum(len(it.turns) for it in items)
    assert n - ends == sum(it.n_gold_calls for it in items)


@pytest.mark.parametrize("category", CATEGORIES)
def test_gold_loops_pass_the_official_checker(category):
    for item in load_agent_items(category, 40):
        loop = run_loop(item, _gold_ask)
        assert official_check(item, loop.trajectory)["valid"], item.id


def test_miss_func_holds_the_function_back_until_its_turn():
    item = load_agent_items("multi_turn_miss_func", 1)[0]
    ((turn, docs),) = item.added.items()
    names = [d["name"] for d in docs]
    before = {t["function"]["name"] for t in item.tools_at(turn - 1)}
    after = {t["function"]["name"] for t in item.tools_at(turn)}
    assert not set(names) & before and set(names) <= after
    assert item.turns[turn][0]["content"].startswith("I have updated some more functions")


def test_our_outputs_equal_bfcl_executor_outputs():
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils import execute_multi_turn_func_call

    for item in load_agent_items("multi_turn_base", 15):
        env = ToolEnv.fresh(item.entry, long_context=False)
        for t, gold in enumerate(item.gold):
            ours = [env.run(c).output for c in gold]
            theirs, _ = execute_multi_turn_func_call(
                gold, item.entry["initial_config"], item.entry["involved_classes"], "agenttest_exec", item.id
            )
            assert ours == theirs, (item.id, t)


# --------------------------------------------------------------------------- executor safety


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')", "cd(folder=open('/etc/passwd').read())", "os.system('x')",
    "cd(*['a'])", "cd(**{'folder': 'a'})", "cd(folder='a'); ls()", "lambda: 1", "cd(folder=x)",
])  # fmt: skip
def test_parse_call_refuses_code(text):
    with pytest.raises(CallParseError):
        parse_call(text)


class _Nasty:
    def spin(self):
        while True:
            pass

    def huge(self):
        return "x" * 5_000_000

    def chatty(self):
        for _ in range(2000):
            print("y" * 1000)
        return "done"

    def boom(self, n: int):
        raise ValueError(f"bad {n}")


@pytest.mark.timeout(20)
def test_executor_limits_and_errors_are_results():
    env = ToolEnv({"Nasty": _Nasty()}, time_limit_s=0.3, output_limit=10_000)
    assert env.run("spin()").error == "time_limit"
    r = env.run("huge()")
    assert r.error == "output_limit" and len(r.output) < 11_000
    assert env.run("chatty()").error == "output_limit"
    assert env.run("boom(n=3)").output == "Error during execution: bad 3"
    assert env.run("boom(n=3)").error == "tool_error:ValueError"
    assert env.run("nope()").error == "unknown_function"
    assert env.run("spin(").error == "parse_error"
    assert env.run("kill()").error == "forbidden"


# --------------------------------------------------------------------------- step scores


def _first_case(category="multi_turn_base", pick=lambda c: c.gold is not None):
    for item in load_agent_items(category, 60):
        for case in iter_steps(item):
            if pick(case):
                return case
    raise AssertionError("no such case")


def test_a_wrong_call_is_caught_by_each_score():
    case = _first_case(pick=lambda c: c.gold is not None and parse_call(c.gold).kwargs)
    name, args = case.gold_arguments
    other = next(t["function"]["name"] for t in case.tools if t["function"]["name"] != name)
    s = score_step(case, [{"name": other, "arguments": {}}])
    assert (
        not s["name_ok"]
        and not s["exact_ok"]
        and not s["exec_ok"]
        and s["reason"].startswith("wrong_function")
    )
    key = next(iter(args))
    wrong = {**args, key: str(args[key]) + "_nope"}
    s = score_step(case, [{"name": name, "arguments": wrong}])
    assert (
        s["name_ok"] and not s["exact_ok"] and not s["exec_ok"] and s["reason"].startswith("wrong_arguments")
    )
    assert score_step(case, [])["reason"] == "declined"
    assert score_step(case, None, "contract:parse_error")["reason"] == "no_answer:contract:parse_error"
    assert score_step(case, [_gold_calls(case)[0]] * 2)["reason"] == "several_calls"


def test_end_of_turn_call_fails_and_exact_is_normalised():
    end = _first_case(pick=lambda c: c.gold is None)
    assert score_step(end, [])["exec_ok"]
    s = score_step(end, [{"name": "ls", "arguments": {}}])
    assert not s["name_ok"] and s["reason"] == "called_at_end_of_turn"
    # a default spelt out is the same call (exact), and executes the same
    import inspect

    def defaults(c):
        call = parse_call(c.gold)
        sig = inspect.signature(c.env._methods[call.name])
        return {k: p.default for k, p in sig.parameters.items()
                if p.default is not inspect.Parameter.empty and k not in call.kwargs and not call.args}  # fmt: skip

    case = _first_case(pick=lambda c: c.gold is not None and defaults(c))
    name, args = case.gold_arguments
    s = score_step(case, [{"name": name, "arguments": {**args, **defaults(case)}}])
    assert s["exact_ok"] and s["exec_ok"], (case.gold, defaults(case))


def test_exec_equivalence_sees_state():
    # `touch` of another file name returns the same (None) output but leaves another state
    case = _first_case(pick=lambda c: c.gold is not None and parse_call(c.gold).name in ("touch", "mkdir"))
    name, args = case.gold_arguments
    key = next(iter(args))
    s = score_step(case, [{"name": name, "arguments": {**args, key: "zz_other"}}])
    assert not s["exec_ok"] and "state_differs" in s["reason"]


# --------------------------------------------------------------------------- closed loops


def test_corrupted_trajectory_agrees_with_the_official_checker():
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import multi_turn_checker

    item = load_agent_items("multi_turn_base", 1)[0]
    gold_direct = multi_turn_checker([[t] if t else [] for t in item.gold], item.gold, item.entry,
                                     item.category, "agenttest_gold")  # fmt: skip
    assert gold_direct["valid"] and official_check(item, run_loop(item, _gold_ask).trajectory)["valid"]

    def corrupt(hop):
        calls, rec = _gold_ask(hop)
        if hop.turn == 1:  # one wrong call instead of the turn's gold, then stop
            if hop.hop > 0 or not calls:
                return [], rec
            args = {k: "nowhere_" + str(v) for k, v in calls[0]["arguments"].items()}
            calls = [{"name": calls[0]["name"], "arguments": args}]
        return calls, rec

    loop = run_loop(item, corrupt)
    ours = official_check(item, loop.trajectory)
    direct = multi_turn_checker(loop.trajectory, item.gold, item.entry, item.category, "agenttest_bad")
    assert ours["valid"] is False and direct["valid"] is False
    assert ours["error_type"] == direct["error_type"]


def test_step_limit_force_terminates():
    item = load_agent_items("multi_turn_base", 1)[0]

    def forever(hop):
        return [{"name": "pwd", "arguments": {}}], {}

    loop = run_loop(item, forever, step_limit=3)
    assert loop.force_terminated and len(loop.hops) == 3
    assert official_check(item, loop.trajectory)["error_type"] == "multi_turn:force_terminated"


# --------------------------------------------------------------------------- runner


def _cfg(tmp_path, **kw):
    base = dict(categories=["multi_turn_base", "multi_turn_miss_param"], out_dir=tmp_path / "out",
                mode="rung:reference", limit=2, record_traces=False, progress=False)  # fmt: skip
    return AgentConfig(**{**base, **kw})


@pytest.mark.parametrize("suite", ["steps", "loops"])
def test_reference_run_scores_100_percent(tmp_path, suite):
    out = run_agent(_cfg(tmp_path, suite=suite, categories=list(CATEGORIES)))
    o = out.summary["overall"]
    assert (o["task_success"] if suite == "loops" else o["accuracy"]) == 1.0
    assert out.summary["complete"] and out.summary["labels"]["reference"]
    page = (tmp_path / "out" / "report.html").read_text()
    assert 'data-plot="cost-quality"' in page and 'data-plot="latency"' in page
    assert "reference (oracle, not a model)" in page


def test_resume_runs_only_what_is_missing(tmp_path):
    first = run_agent(_cfg(tmp_path), stop_after=5)
    assert first.ran == 5 and not first.summary["complete"]
    second = run_agent(_cfg(tmp_path))
    assert second.skipped == 5 and second.summary["complete"]
    ids = [json.loads(x)["id"] for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == first.ran + second.ran
    with pytest.raises(BenchInputError, match="holds a run with suite"):
        run_agent(_cfg(tmp_path, suite="loops"))


def test_traces_are_tagged_with_the_run(tmp_path):
    from modelladder.traces import TraceStore

    db = tmp_path / "t.sqlite"
    out = run_agent(_cfg(tmp_path, record_traces=True, db=db, limit=1, categories=["multi_turn_base"]))
    store = TraceStore(db)
    try:
        runs = store.list_runs(limit=None, tag=("bench_run", out.summary["run"]))
    finally:
        store.close()
    assert len(runs) == len(out.records) > 0


def test_offline_order_groups_items_by_tool_list(tmp_path):
    """Items sharing a tool list run back to back (their ~4.3k-token prefix is reused), every
    item exactly once, and the order is the same on a rerun (resume depends on it)."""
    cfg = _cfg(tmp_path, limit=40, categories=["multi_turn_base"])
    items = select_items(cfg)
    keys = [tuple(t["function"]["name"] for t in it.tools_at(0)) for it in items]
    changes = sum(1 for a, b in zip(keys, keys[1:], strict=False) if a != b)
    assert changes == len(set(keys)) - 1 < len(items) - 1
    assert sorted(it.id for it in items) == sorted(it.id for it in load_agent_items("multi_turn_base", 40))
    assert [it.id for it in items] == [it.id for it in select_items(cfg)]


def test_online_order_is_fixed_and_never_uses_later_records(tmp_path):
    cfg = _cfg(tmp_path, online=True, limit=5, seed=3)
    order = [it.id for it in select_items(cfg)]
    assert order == [it.id for it in select_items(cfg)]
    assert order != [it.id for it in select_items(_cfg(tmp_path, limit=5))]
    seen: list[int] = []
    stream = [{"id": i, "ok": True} for i in range(10)]
    learner = OnlineLearner(3, update=lambda hist: seen.append(len(hist)))
    for pos, rec in enumerate(stream):
        learner.observe(rec, position=pos)
        assert all(r["id"] <= rec["id"] for r in learner.history)
    assert seen == [3, 6, 9]
    out = run_agent(_cfg(tmp_path, online=True, limit=2, update_every=4, out_dir=tmp_path / "on"))
    curve = out.summary["online"]["curve"]
    assert [p["seen"] for p in curve][-1] == len(out.records) and curve[0]["seen"] == 4


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELLADDER_HOME", str(tmp_path / "home"))
    from modelladder.cli import main

    return lambda *args: CliRunner().invoke(main, ["bench", "agent", *args])


@pytest.mark.parametrize("args, message", [
    (["--category", "multi_turn_bse"], "unknown multi-turn category 'multi_turn_bse'"),
    (["--category", "multi_turn_base", "--suite", "chains"], "unknown suite 'chains'"),
    (["--category", "multi_turn_base", "--limit", "0"], "--limit must be a positive"),
    (["--category", "multi_turn_base", "--limit", "-1"], "--limit must be a positive"),
    (["--category", "multi_turn_base", "--mode", "rung:gpt-9"], "unknown rung 'gpt-9'"),
])  # fmt: skip
def test_cli_bad_input_exit_2(cli, tmp_path, args, message):
    r = cli(*args, "--out", str(tmp_path / "o"))
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output


def test_cli_unwritable_out_and_reference_run(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cli("--category", "multi_turn_base", "--mode", "rung:reference", "--out", str(blocker / "sub"))
    assert r.exit_code == 2 and "is not writable" in r.output
    r = cli("--category", "multi_turn_base", "--mode", "rung:reference", "--limit", "1", "--no-progress",
            "--out", str(tmp_path / "ok"))  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "100.0%" in r.output


def test_agent_report_plots_are_drawn_in_chromium(tmp_path):
    """report.html of a loops run with an online curve: every plot drawn by a real browser."""
    from tests.support.bench import chromium

    exe = chromium()
    if exe is None:
        pytest.skip(
            "chromium is not installed (Debian: apt-get install -y chromium); cannot render report.html"
        )
    out = run_agent(_cfg(tmp_path, suite="loops", online=True, update_every=1, limit=3))
    report = out.out_dir / "report.html"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,3000"]  # fmt: skip
    import re
    import subprocess

    dom = subprocess.run([exe, *flags, "--virtual-time-budget=5000", "--dump-dom", report.as_uri()],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    plots = re.findall(r'<svg class="plot" data-plot="([\w-]+)"', report.read_text())
    assert {"cost-quality", "latency", "learning-curve"} <= set(plots), plots
    m = re.search(r'<body[^>]*data-plots-drawn="(\d+)"', dom.stdout)
    assert m and int(m.group(1)) == len(plots), "the page's load script did not draw every plot"
    drawn = dict(re.findall(r'data-plot="([\w-]+)"[^>]*data-drawn="(\d+)"', dom.stdout))
    assert all(int(drawn[p]) > 0 for p in plots), drawn


def test_learn_gate_calibrates_from_the_run_s_own_traces_and_the_ladder_applies_it(tmp_path):
    """--online --learn-gate: every --update-every steps the gate and the ex-ante skip are
    calibrated from the labels so far (scripted edge rungs that always decline, the reference
    oracle above them); later steps are judged by them; a store with earlier runs is refused."""
    from modelladder.backends.base import Generation
    from modelladder.backends.scripted import ScriptedBackend
    from modelladder.contracts.tools import render_calls

    def decline(name):
        return ScriptedBackend(name, lambda call: Generation(render_calls([]), 50, 5, 0.01))

    backends = {"smollm2-135m": decline("smollm2-135m"), "gemma3-270m": decline("gemma3-270m")}
    db = tmp_path / "traces.sqlite"
    cfg = _cfg(tmp_path, mode="ladder", online=True, limit=6, update_every=20, record_traces=True, db=db,
               learn_gate=0.1)  # fmt: skip
    out = run_agent(cfg, backends=backends)
    events = out.summary["online"]["learner"]["events"]
    assert [e["seen"] for e in events] == list(range(20, len(out.records) + 1, 20))
    assert "at least 30" in events[0]["gate"]["error"]  # 20 steps: too few labels yet
    calibrated = [e for e in events if "version" in e["gate"]]
    assert calibrated and not calibrated[0]["gate"]["certified"]  # declining edges: nothing to certify
    first = calibrated[0]["seen"]
    later = [r for r in out.records[first:] if r.get("escalations")]
    assert any(x.startswith(("gate:", "skip:")) for r in later for x in r["escalations"])
    assert not any(
        x.startswith(("gate:", "skip:")) for r in out.records[:20] for x in r.get("escalations") or []
    )
    with pytest.raises(BenchInputError, match="already holds runs"):
        run_agent(_cfg(tmp_path, mode="ladder", online=True, limit=1, record_traces=True, db=db, learn_gate=0.1,
                       out_dir=tmp_path / "again"), backends=backends)  # fmt: skip
    with pytest.raises(BenchInputError, match="--learn-gate needs --online"):
        run_agent(_cfg(tmp_path, mode="ladder", learn_gate=0.1, out_dir=tmp_path / "x"), backends=backends)
