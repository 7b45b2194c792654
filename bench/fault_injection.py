"""Fault injection: for each fault, N trials on a real local stack (a private redis-server, real `cadre`
worker processes, a bare git remote, the scripted model server on 127.0.0.1), at Cadre's default settings.
Each trial is a run of 3 items with the fault injected at a random moment (bench/faults/injections.py):

    worker-kill, lander-stall, redis-restart, message-lost, judge-kill, network-cut

Prints a Markdown table: per fault, the trials, items lost (planned, never landed nor settled), items
duplicated (their `Cadre-Item` trailer on the remote's main more than once), the median and worst recovery
time (fault → every item it caught unsettled has settled; → the end of the run for the judge), and a verdict
against the targets (0 lost, 0 duplicated, recovery < 2 min); then a total row. Every figure is measured
(bench/faults/tally.py). The faults run side by side, each on a stack of its own; progress and every trial's
details go to stderr. Not a test: a script that prints figures. `network-cut` needs root and iproute2.

    python bench/fault_injection.py --trials 9                   # 54 trials, about 20 minutes
    python bench/fault_injection.py --faults worker-kill,judge-kill --trials 2
    python bench/fault_injection.py --trials 2 --set LEASE_SECONDS=10 --set TICK_SECONDS=2   # not the defaults
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.faults.injections import FAULTS, NotInjected, settings_for  # noqa: E402
from bench.faults.netns import remove_leftovers  # noqa: E402
from bench.faults.stack import ITEMS_PER_RUN, Stack, StackSettings  # noqa: E402
from bench.faults.tally import Totals, combined  # noqa: E402
from orchestrator.config.settings import CadreSettings  # noqa: E402
from orchestrator.landing.lander import LOCK_SECONDS  # noqa: E402

MAX_SKIPS = 3  # runs without the fault's moment, per trial asked for, before a fault is given up
MAX_ERRORS = 3  # trials ended by an error (each rebuilds the stack) before a fault is given up


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_fault(fault: str, options, workdir: Path, starting=contextlib.nullcontext()) -> Totals:
    """`options.trials` counted trials of `fault` on one stack (rebuilt after an error); stacks start one at a
    time while holding `starting` (a lock shared by the faults that run side by side)."""
    totals, stack, number = Totals(fault, asked=options.trials), None, 0
    rng = random.Random(f"{options.seed}-{fault}" if options.seed is not None else None)
    settings = settings_for(fault, StackSettings(tuple(options.overrides), options.workers,
                                                 run_timeout=options.run_timeout), options)
    try:
        while len(totals.trials) < options.trials and totals.skipped < MAX_SKIPS * options.trials:
            number += 1
            started = time.monotonic()
            try:
                if stack is None:
                    with starting:
                        stack = Stack(Path(tempfile.mkdtemp(prefix=f"{fault}-", dir=workdir)), settings)
                    log(f"{fault}: stack up in {stack.root} ({time.monotonic() - started:.0f} s)")
                    started = time.monotonic()
                trial = FAULTS[fault](stack, f"{fault}-{number}", rng, options)
            except NotInjected as exc:
                totals.skipped += 1
                log(f"{fault} run {number}: fault not injected ({exc}); not counted")
                continue
            except Exception:  # noqa: BLE001 - reported, and the stack rebuilt
                totals.errors.append(traceback.format_exc().strip().splitlines()[-1])
                log(f"{fault} run {number}: error, stack rebuilt:\n{traceback.format_exc()}")
                if stack is not None:
                    stack.close()
                stack = None
                if len(totals.errors) >= MAX_ERRORS:
                    break
                continue
            totals.trials.append(trial)
            log(f"{fault} trial {len(totals.trials)}/{options.trials} ({time.monotonic() - started:.0f} s): "
                f"{trial.line()}")
    finally:
        if stack is not None:
            stack.close()
    return totals


def _child(fault: str, options, workdir: Path, results, starting) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the stack and its namespace are cleaned up
    try:
        results.put(run_fault(fault, options, workdir, starting))
    except BaseException:
        results.put(Totals(fault, asked=options.trials, errors=[traceback.format_exc().strip().splitlines()[-1]]))
        raise


def run_all(faults: list[str], options, workdir: Path) -> list[Totals]:
    """Every fault in a process of its own, `options.parallel` at a time; their totals in `faults` order."""
    context = multiprocessing.get_context("fork")
    results, starting, running, done = context.Queue(), context.Lock(), {}, {}
    waiting = list(faults)

    def forward(signum, _frame) -> None:
        for process in running.values():
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, forward)
    while waiting or running:
        while waiting and len(running) < options.parallel:
            fault = waiting.pop(0)
            running[fault] = context.Process(target=_child, name=fault,
                                             args=(fault, options, workdir, results, starting))
            running[fault].start()
        try:
            totals = results.get(timeout=5)
            done[totals.fault] = totals
            running.pop(totals.fault).join()
        except Exception:  # noqa: BLE001 - queue.Empty: look for a child that died without a word
            for fault, process in list(running.items()):
                if not process.is_alive() and fault not in done:
                    done[fault] = Totals(fault, asked=options.trials, errors=[f"exited with {process.exitcode}"])
                    running.pop(fault)
    return [done[f] for f in faults]


def print_table(results: list[Totals], options, seconds: float) -> None:
    settings = CadreSettings(**{name.lower(): value for name, value in options.overrides})
    print(f"Cadre settings: lease {settings.lease_seconds} s, tick {settings.tick_seconds:g} s, lander lock "
          f"{LOCK_SECONDS} s, integration `{settings.landing.strategy}`, push interval "
          f"{settings.landing.push_interval_seconds:g} s, max attempts {settings.max_attempts}"
          + (f" (overridden: {', '.join(f'{n}={v}' for n, v in options.overrides)})" if options.overrides else
             " (the defaults)")
          + f". Per stack {options.workers} worker processes; {ITEMS_PER_RUN} items per run.\n")
    print("| fault | trials | lost | duplicated | recovery p50 s | recovery max s | verdict |")
    print("|---|---|---|---|---|---|---|")
    for totals in results:
        print(totals.row())
    print(combined(results).row("**total**"))
    print()
    for totals in results:
        extra = [f"{totals.total('planned')} items planned, {totals.total('landed')} landed"]
        recoveries = (f"{t.recovery:.0f}" if t.recovery is not None else "never" for t in totals.trials)
        extra += [f"recoveries (s): {', '.join(recoveries)}"]
        extra += [f"{totals.skipped} run(s) without the fault's moment (not counted)"] if totals.skipped else []
        extra += [f"errors: {'; '.join(totals.errors)}"] if totals.errors else []
        print(f"- {totals.fault}: " + "; ".join(extra) + ".")
    print(f"\nTotal wall time: {seconds / 60:.1f} min ({options.parallel} faults at a time). "
          f"Command: `python {' '.join(sys.argv)}`.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=9, help="counted trials per fault")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of: {', '.join(FAULTS)}")
    parser.add_argument("--parallel", type=int, default=len(FAULTS), help="faults run side by side")
    parser.add_argument("--workers", type=int, default=3, help="worker processes per stack")
    parser.add_argument("--judge-delay", type=float, default=10.0, help="seconds the judge's model call takes")
    parser.add_argument("--redis-down-seconds", type=float, default=10.0)
    parser.add_argument("--cut-seconds", type=float, default=30.0)
    parser.add_argument("--run-timeout", type=float, default=300.0, help="a run not ended by then is stopped")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="a Cadre setting for every process (CADRE_NAME); default: none, Cadre's defaults")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="keep stacks and logs here (default: deleted)")
    options = parser.parse_args()
    faults = [f.strip() for f in options.faults.split(",") if f.strip()]
    if unknown := [f for f in faults if f not in FAULTS]:
        parser.error(f"unknown faults {unknown}: choose from {', '.join(FAULTS)}")
    options.overrides = [tuple(o.upper().removeprefix("CADRE_").split("=", 1)) for o in options.overrides]
    for name in [n for n in os.environ if n.startswith("CADRE_")]:  # the stacks run on Cadre's defaults
        del os.environ[name]
    remove_leftovers()
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="cadre-faults-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        results = run_all(faults, options, workdir)
    finally:
        if options.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(results, options, time.monotonic() - started)


if __name__ == "__main__":
    main()
