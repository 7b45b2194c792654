"""`cadre report RUN`: a Markdown account of a run, cycle by cycle.

Goals, titles, reasons and attempt strings were written by a user, a model or an agent: in the report
they carry no control character or escape sequence (it may be printed on a terminal), and a table cell
stays one cell on one line whatever it holds.
"""

from __future__ import annotations

import re
import time

from orchestrator.state.models import WorkItem
from orchestrator.state.store import Store
from orchestrator.untrusted.text import clean_text, one_line

_PIPE = re.compile(r"(\\*)\|")


def _money(value: float) -> str:
    return f"${value:.4f}"


def table_cell(value: object) -> str:
    """`value` as one Markdown table cell: one line, cleaned, every `|` escaped, so it can neither add a
    column nor end the row."""
    # Backslashes before a `|` are doubled too: escaping only the `|` of `a\|b` would give `a\\|b`, an
    # escaped backslash and a bare separator.
    return _PIPE.sub(lambda m: m[1] * 2 + "\\|", one_line(str(value)))


def markdown_report(store: Store, status: dict) -> str:
    """Per cycle: items, landed, failed, cost, time and the verdict; then totals per role and budgets."""
    items_by_cycle = {number: store.items.many([v["id"] for v in status["items"] if v["cycle"] == number])
                      for number in (cycle["number"] for cycle in status["cycles"])}
    return report_text(status, store.usage.totals(status["id"]), items_by_cycle)


def report_text(status: dict, usage: dict[str, float], items_by_cycle: dict[int, list[WorkItem]]) -> str:
    """The report of `markdown_report` from what it read: the run's status JSON, its usage totals and each
    cycle's work items. Every value a user, a model or an agent wrote is cleaned (no control characters
    at all but newlines and tabs in prose) and every table cell goes through `table_cell`."""
    lines = [f"# Cadre run {status['id']}", "", f"- goal: {clean_text(status['goal'])}",
             f"- repository: {clean_text(status['repo'])} (branch `{one_line(status['branch'])}`)",
             f"- status: **{status['status']}**" + (f" ({clean_text(status['reason'])})" if status["reason"] else ""),
             f"- worker backend: {clean_text(status['worker_backend'])}",
             f"- tokens: {status['tokens']}, cost: {_money(status['cost_usd'])}"
             + (f" (plus {status['usage_unreported_calls']} agent runs that reported no usage)"
                if status["usage_unreported_calls"] else ""), ""]
    for cycle in status["cycles"]:
        number = cycle["number"]
        views = [v for v in status["items"] if v["cycle"] == number]
        items = items_by_cycle.get(number, [])
        seconds = sum(i.handoff.seconds for i in items if i.handoff)
        landed = sum(1 for v in views if v["commit"])
        failed = sum(1 for v in views if v["status"] == "failed")
        lines += [f"## Cycle {number}", "",
                  f"{len(views)} items, {landed} landed, {failed} failed; "
                  f"cost {_money(usage.get(f'cycle:{number}:cost_usd', 0.0))}, "
                  f"{int(usage.get(f'cycle:{number}:tokens', 0))} tokens, {seconds:.0f} s of worker time", "",
                  "| item | title | status | commit | tokens | cost | seconds |", "|---|---|---|---|---|---|---|"]
        for item in items:
            handoff = item.handoff
            lines.append(f"| {table_cell(item.id)} | {table_cell(item.title)} | "
                         f"{handoff.status.value if handoff else item.status.value} | "
                         f"{table_cell((handoff.commit or handoff.rescue_branch or '') if handoff else '')} | "
                         f"{handoff.tokens if handoff else 0} | {_money(handoff.cost_usd) if handoff else ''} | "
                         f"{handoff.seconds if handoff else 0:.0f} |")
        attempts = [(v["id"], a) for v in views for a in v.get("attempts", [])]
        if attempts:
            lines += ["", "| item | attempt | host | Celery worker | start (UTC) | seconds | outcome |", "|---|---|---|---|---|---|---|"]
            for item_id, a in attempts:
                seconds = f"{a['end'] - a['start']:.0f}" if a["end"] else ""
                lines.append(f"| {table_cell(item_id)} | {a['number']} | {table_cell(a['host'])} | "
                             f"{table_cell(a['celery_hostname'])} | "
                             f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(a['start']))} | {seconds} | "
                             f"{table_cell(a['outcome'] or 'running')} |")
        verdict = cycle["verdict"]
        if verdict:
            lines += ["", f"**Verdict:** {'done' if verdict['done'] else 'not done'}: {clean_text(verdict['reason'])}"]
            if verdict["next_focus"]:
                lines.append(f"Next focus: {clean_text(verdict['next_focus'])}")
        lines.append("")
    lines += ["## Usage by role", "", "| role | tokens | cost |", "|---|---|---|"]
    for role, totals in status["usage_by_role"].items():
        lines.append(f"| {table_cell(role)} | {totals['tokens']} | {_money(totals['cost_usd'])} |")
    if efficiency := status.get("efficiency"):
        lines += ["", *efficiency_lines(efficiency)]
    if status.get("guidance"):
        lines += ["", "## Guidance", "", "| at (UTC) | to | by | guidance |", "|---|---|---|---|"]
        for entry in status["guidance"]:
            lines.append(f"| {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(entry['at']))} | {table_cell(entry['to'])} "
                         f"| {table_cell(entry['by'])} | {table_cell(entry['text'])} |")
    if budget := status.get("budget"):
        spent = budget["spent"]
        lines += ["", "## Budget (limits as they stand, and what was spent)", "",
                  f"- cost: {_money(spent['cost_usd'])} of {budget['max_cost_usd'] or 'no limit'}",
                  f"- tokens: {spent['tokens']} of {budget['max_tokens'] or 'no limit'}",
                  f"- hours: {spent['hours']:.2f} of {budget['max_hours'] or 'no limit'}",
                  f"- cycles: {spent['cycles']} of {budget['max_cycles']}"]
    return "\n".join(lines) + "\n"


def efficiency_lines(block: dict) -> list[str]:
    """The report's efficiency section: the run's figures, then a row per cycle."""
    def show(value, unit: str = "") -> str:
        return "-" if value is None else f"{value:g}{unit}" if isinstance(value, (int, float)) else str(value)

    lines = ["## Efficiency", "",
             f"- landed {block['landed']} of {block['items']} items; {show(block['landings_per_hour'])} landings per hour",
             f"- per landed item: {show(block['tokens_per_landed_item'])} tokens, "
             f"{show(block['cost_per_landed_item_usd'], ' USD')}",
             f"- wasted: {block['wasted_tokens']} tokens, {_money(block['wasted_cost_usd'])} "
             f"({block['wasted_share'] * 100:.1f} % of all tokens)",
             f"- conflicts: {block['conflicts']} ({show(block['conflicts_per_landing'])} per landing); reworks: "
             f"{block['reworks']}; rescues: {block['rescues']}; refused: {block['refused']}; stalled: {block['stalled']}",
             f"- time from created to landed: p50 {show(block['time_to_land_p50_s'], ' s')}, "
             f"p95 {show(block['time_to_land_p95_s'], ' s')}", "",
             "| cycle | landed | items | landings/h | wasted share | conflicts | reworks | rescues | verdict | checks "
             "(failed/run) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for cycle in block["cycles"]:
        checks = cycle["checks"]
        lines.append(f"| {cycle['cycle']} | {cycle['landed']} | {cycle['items']} | {show(cycle['landings_per_hour'])} | "
                     f"{cycle['wasted_share'] * 100:.1f} % | {cycle['conflicts']} | {cycle['reworks']} | "
                     f"{cycle['rescues']} | {cycle['verdict'] or '-'} | {checks['failures']}/{checks['runs']} |")
    return lines
