"""``modelladder gate status|calibrate|explain``: the calibrated gate of each step.

``calibrate`` fits and certifies a step's gate from its labelled traces and stores a new
version (a running ladder or gateway with a :class:`~modelladder.learning.StoreGate` picks it
up without a restart); bad input exits 2 with one message and leaves the previous calibration
in force. ``status`` shows what is in force per step; ``explain`` says why one run's answers
were kept or escalated.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from modelladder.cli import main
from modelladder.cli._common import fail
from modelladder.cli.traces_cmd import _db_option, _find, _open

__all__ = ["calibrate_cmd", "calibrate_skip_cmd", "explain_cmd", "gate", "status_cmd"]


@main.group("gate")
def gate() -> None:
    """The calibrated gate per step: status, calibrate, calibrate-skip, explain."""


@gate.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_db_option
def status_cmd(as_json: bool, db: Path | None) -> None:
    """Per step: calibration version, certified alpha, threshold, live accepted-wrong, drift."""
    from modelladder.learning import StoreGate

    store = _open(db)
    g = StoreGate(store, poll_s=0, drift_s=0)
    st = g.status()
    keys = {k: (n, nl) for k, n, nl in store.step_keys()}
    skips = g.skip_status()
    if as_json:
        click.echo(json.dumps({"steps": st, "skip": skips, "errors": g.errors, "runs": keys}, indent=2))
        return
    for err in g.errors:
        click.echo(f"warning: {err}", err=True)
    if not st:
        click.echo("no calibration yet; steps with traces (runs, labels):")
    for k, (n, nl) in keys.items():
        s = st.get(k)
        if s is None:
            click.echo(f"  {k}: {n} runs, {nl} labels; not calibrated (the fleet's thresholds apply)")
            continue
        live = "-" if s["live_accepted_wrong"] is None else f"{100 * s['live_accepted_wrong']:.1f} %"
        what = (f"certified alpha={s['alpha']:g} at confidence {s['confidence']:g}, {s['model']} score >= "
                f"{s['threshold']:.4g}" if s["certified"] else
                f"NOT certified: escalates all; about {s['labels_needed'] or 'unknown'} more labels needed")  # fmt: skip
        drift = "  DRIFT: escalating all" if s["drift"] else ""
        click.echo(f"  {k}: version {s['version']}, {what}; live {s['live_labels']} labels, "
                   f"accepted-wrong {live}{drift}  ({n} runs, {nl} labels)")  # fmt: skip
    for k, sk in skips.items():
        what = (f"skips {sk['rung']} when predicted failure >= {sk['threshold']:.3g} (lost right answers "
                f"<= {sk['max_lost']:g} at confidence {sk['confidence']:g}; skipped {100 * (sk['skip_share'] or 0):.1f} "
                "% of held-out steps)" if sk["certified"] else
                f"NOT certified: skips nothing; about {sk['labels_needed'] or 'unknown'} more labels needed")  # fmt: skip
        click.echo(f"  {k}: ex-ante skip version {sk['version']}, {what}")


@gate.command("calibrate")
@click.argument("step_key")
@click.option(
    "--alpha",
    "max_accepted_wrong",
    type=float,
    default=0.05,
    show_default=True,
    help="Largest accepted-wrong rate to certify, within (0, 1).",
)
@click.option("--confidence", type=float, default=0.95, show_default=True, help="1 - delta, within (0, 1).")
@click.option(
    "--contract-digest", default=None, help="Only labels of this contract (when a step's contract changed)."
)
@click.option(
    "--method",
    type=click.Choice(["fixed_sequence", "bonferroni"]),
    default="fixed_sequence",
    show_default=True,
)
@click.option("--min-labels", type=click.IntRange(min=2), default=30, show_default=True)
@click.option("--all-contracts", is_flag=True,
              help="One gate over every contract the step has had (tool sets that change per conversation).")  # fmt: skip
@_db_option
def calibrate_cmd(step_key: str, max_accepted_wrong: float, confidence: float, contract_digest: str | None,
                  method: str, min_labels: int, all_contracts: bool, db: Path | None) -> None:  # fmt: skip
    """Calibrate STEP_KEY (a step name, or contract:<digest> for unnamed steps)."""
    from modelladder.learning import CalibrationError, calibrate_step
    from modelladder.traces import TraceStoreError

    store = _open(db)
    try:
        version, cert = calibrate_step(store, step_key, alpha=max_accepted_wrong, confidence=confidence,
                                       contract_digest=contract_digest, method=method, min_labels=min_labels,
                                       all_contracts=all_contracts)  # fmt: skip
    except (CalibrationError, TraceStoreError) as exc:
        fail(f"{exc}; the previous calibration stays in force")
    if cert.certified:
        click.echo(
            f"step {step_key}: version {version}, certified: accepted-wrong <= {max_accepted_wrong:g} with "
            f"confidence {confidence:g} (upper bound {cert.upper_bound:.4f} on {cert.n_accepted} of "
            f"{cert.n_held_out} held-out answers, {cert.n_wrong} wrong); keeps {100 * cert.accept_share:.1f} %"
        )
    else:
        need = (
            "no amount at the observed error rates"
            if cert.labels_needed is None
            else f"about {cert.labels_needed}"
        )
        click.echo(
            f"step {step_key}: version {version}, NOT certified at alpha={max_accepted_wrong:g}: the step "
            f"escalates every answer; more labels needed: {need}"
        )


@gate.command("calibrate-skip")
@click.argument("step_key")
@click.option(
    "--max-lost",
    type=float,
    default=0.1,
    show_default=True,
    help="Largest share of skipped steps the edge would have answered right, within (0, 1).",
)
@click.option("--confidence", type=float, default=0.95, show_default=True, help="1 - delta, within (0, 1).")
@click.option("--min-labels", type=click.IntRange(min=2), default=30, show_default=True)
@_db_option
def calibrate_skip_cmd(
    step_key: str, max_lost: float, confidence: float, min_labels: int, db: Path | None
) -> None:
    """Fit STEP_KEY's ex-ante skip: from the request alone, start above the edge where it will fail."""
    from modelladder.learning import CalibrationError, calibrate_skip
    from modelladder.traces import TraceStoreError

    store = _open(db)
    try:
        version, cert = calibrate_skip(store, step_key, max_lost=max_lost, confidence=confidence,
                                       min_labels=min_labels)  # fmt: skip
    except (CalibrationError, TraceStoreError) as exc:
        fail(f"{exc}; the previous skip calibration stays in force")
    if cert.certified:
        click.echo(
            f"step {step_key}: version {version}, certified: of the skipped steps at most {max_lost:g} would have "
            f"been right at the edge, with confidence {confidence:g} (upper bound {cert.upper_bound:.4f}; "
            f"{cert.n_wrong} of {cert.n_accepted} skipped held-out steps were right there); skips "
            f"{100 * cert.accept_share:.1f} % of steps"
        )
    else:
        click.echo(
            f"step {step_key}: version {version}, NOT certified at max-lost={max_lost:g}: nothing is skipped; "
            f"more labels needed: {cert.labels_needed if cert.labels_needed is not None else 'unknown'}"
        )


@gate.command("explain")
@click.argument("run_id")
@_db_option
def explain_cmd(run_id: str, db: Path | None) -> None:
    """Why each answer of RUN_ID was kept or escalated (with the gate's score where it had one)."""
    from modelladder.learning.calibrate import CalibrationError, parse
    from modelladder.learning.features import from_attempt

    store = _open(db)
    run = _find(store, run_id)
    cal = None
    if run.gate_version is not None:
        rows = [c for c in store.calibrations(run.step_key) if c.version == run.gate_version]
        if rows:
            try:
                cal = parse(rows[0])
            except CalibrationError as exc:
                click.echo(f"warning: {exc}", err=True)
    click.echo(
        f"run {run.run_id}: step key {run.step_key}, episode {run.episode_id}, config {run.config_digest}, "
        f"gate {'calibration version ' + str(run.gate_version) if run.gate_version else 'the fleet thresholds'}"
    )
    for a in run.attempts:
        if a.error == "skipped":
            click.echo(f"  attempt {a.index} on {a.rung} ({a.placement}): not run, {a.escalation_reason}: "
                       f"{a.error_detail}")  # fmt: skip
            continue
        verdict = (
            "passed its contract" if a.verdict_ok else f"failed its contract ({a.verdict_reason or a.error})"
        )
        line = f"  attempt {a.index} on {a.rung} ({a.placement}): {verdict}; "
        line += "kept" if a.accepted else f"escalated: {a.escalation_reason}"
        if cal is not None and a.verdict_ok and a.rung in cal.rungs:
            score = cal.model.score(from_attempt(a))
            thr = "none (not certified)" if cal.threshold is None else f"{cal.threshold:.4g}"
            line += f"; gate score {score:.4g}, threshold {thr}"
        c = a.confidence
        if c is not None and c.mean_logprob is not None:
            line += f"; mean logprob {c.mean_logprob:.3f}, min {c.min_logprob:.3f}"
        click.echo(line)
