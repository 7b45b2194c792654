"""`cadre report RUN`: a Markdown account of a run, cycle by cycle."""

from __future__ import annotations

import time

from orchestrator.state.store import Store


def _money(value: float) -> str:
    return f"${value:.4f}"


def markdown_report(store: Store, status: dict) -> str:
    """Per cycle: items, landed, failed, cost, time and the verdict; then totals per role and budgets."""
    usage = store.usage.totals(status["id"])
    lines = [f"# Cadre run {status['id']}", "", f"- goal: {status['goal']}",
             f"- repository: {status['repo']} (branch `{status['branch']}`)",
             f"- status: **{status['status']}**" + (f" ({status['reason']})" if status["reason"] else ""),
             f"- worker backend: {status['worker_backend']}",
             f"- tokens: {status['tokens']}, cost: {_money(status['cost_usd'])}"
             + (f" (plus {status['usage_unreported_calls']} agent runs that reported no usage)"
                if status["usage_unreported_calls"] else ""), ""]
    for cycle in status["cycles"]:
        number = cycle["number"]
        tasks = [t for t in status["tasks"] if t["cycle"] == number]
        items = store.items.many([t["id"] for t in tasks])
        seconds = sum(i.handoff.seconds for i in items if i.handoff)
        landed = sum(1 for t in tasks if t["commit"])
        failed = sum(1 for t in tasks if t["status"] == "failed")
        lines += [f"## Cycle {number}", "",
                  f"{len(tasks)} items, {landed} landed, {failed} failed; "
                  f"cost {_money(usage.get(f'cycle:{number}:cost_usd', 0.0))}, "
                  f"{int(usage.get(f'cycle:{number}:tokens', 0))} tokens, {seconds:.0f} s of worker time", "",
                  "| item | title | status | commit | tokens | cost | seconds |", "|---|---|---|---|---|---|---|"]
        for item in items:
            handoff = item.handoff
            lines.append(f"| {item.id} | {item.title} | {handoff.status.value if handoff else item.status.value} | "
                         f"{(handoff.commit or handoff.rescue_branch or '') if handoff else ''} | "
                         f"{handoff.tokens if handoff else 0} | {_money(handoff.cost_usd) if handoff else ''} | "
                         f"{handoff.seconds if handoff else 0:.0f} |")
        attempts = [(t["id"], a) for t in tasks for a in t.get("attempts", [])]
        if attempts:
            lines += ["", "| item | attempt | host | node | start (UTC) | seconds | outcome |", "|---|---|---|---|---|---|---|"]
            for item_id, a in attempts:
                seconds = f"{a['end'] - a['start']:.0f}" if a["end"] else ""
                lines.append(f"| {item_id} | {a['number']} | {a['host']} | {a['node']} | "
                             f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(a['start']))} | {seconds} | "
                             f"{a['outcome'] or 'running'} |")
        verdict = cycle["verdict"]
        if verdict:
            lines += ["", f"**Verdict:** {'done' if verdict['done'] else 'not done'}: {verdict['reason']}"]
            if verdict["next_focus"]:
                lines.append(f"Next focus: {verdict['next_focus']}")
        lines.append("")
    lines += ["## Usage by role", "", "| role | tokens | cost |", "|---|---|---|"]
    for role, totals in status["usage_by_role"].items():
        lines.append(f"| {role} | {totals['tokens']} | {_money(totals['cost_usd'])} |")
    return "\n".join(lines) + "\n"
