"""`cadre metrics`: Cadre's own Prometheus metrics, read from Redis at each scrape, so one instance serves
the whole cluster (every host's workers write to the same Redis)."""

from __future__ import annotations

from collections import Counter

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from orchestrator.config.settings import ROLES
from orchestrator.queues.inspection import priority_lists
from orchestrator.state.metrics import ATTEMPT_BUCKETS, totals
from orchestrator.state.models import ItemStatus, RunStatus
from orchestrator.state.store import Store

QUEUES = ("plan", "work", "judge")
COUNTER_HELP = {"landings": "Commits landed on a branch", "rescues": "Commits pushed to a rescue branch instead",
                "conflicts": "Rebase or landing conflicts handed to an agent", "requeues": "Attempts requeued",
                "redispatches": "Lost messages sent again", "dropped_deliveries": "Duplicate or late deliveries dropped",
                "refusals": "Commits refused for touching a protected path", "stalls": "Agents stopped as stalled"}


# `efficiency` figures served per active run, as `cadre_run_<name>{run}`.
EFFICIENCY_HELP = {"landings_per_hour": "Items landed per hour of the run", "wasted_share": "Share of tokens wasted",
                   "cost_per_landed_item_usd": "Cost per landed item (USD)",
                   "conflicts_per_landing": "Conflicts per landing",
                   "stalled": "Items whose agent stalled", "refused": "Items refused for touching a protected path",
                   "time_to_land_p95_s": "Seconds from an item's creation to its landing, p95"}


class CadreCollector(Collector):
    """Collects runs, items, queue lengths and Cadre's running totals from Redis at each scrape."""

    def __init__(self, store: Store):
        self.store = store

    def collect(self):
        redis, sums = self.store.redis, totals(self.store.redis)
        runs = self.store.runs.all()
        by_status = GaugeMetricFamily("cadre_runs", "Stored runs by status", labels=["status"])
        run_counts = Counter(run.status.value for run in runs)
        for status in RunStatus:  # every status, 0 included: paused and draining runs are counted too
            by_status.add_metric([status.value], run_counts.get(status.value, 0))
        yield by_status
        items = GaugeMetricFamily("cadre_items", "Work items of active runs by status", labels=["status"])
        per_run = GaugeMetricFamily("cadre_run_items", "Work items of each active run by status",
                                    labels=["run", "status"])
        overall: Counter = Counter()
        for run in (r for r in runs if not r.is_over):
            counts = Counter(i.status.value for i in self.store.items.many(self.store.items.ids_of_run(run.id)))
            overall.update(counts)
            for status, count in counts.items():
                per_run.add_metric([run.id, status], count)
        for status in ItemStatus:  # every status, 0 included (awaiting_approval, cancelled...)
            items.add_metric([status.value], overall.get(status.value, 0))
        yield items
        yield per_run
        yield from self._efficiency([r for r in runs if not r.is_over])
        for name, text in COUNTER_HELP.items():
            yield CounterMetricFamily(f"cadre_{name}", text, value=sums.get(f"count:{name}", 0.0))
        yield from self._usage(sums)
        queue = GaugeMetricFamily("cadre_queue_length", "Messages waiting in a queue", labels=["queue"])
        for name in QUEUES:
            queue.add_metric([name], sum(redis.llen(key) for key in priority_lists(name)))
        yield queue
        yield self._attempts(sums)

    def _efficiency(self, runs):
        """Each active run's efficiency figures (`cadre status --json`'s `efficiency`), as gauges."""
        from orchestrator.flow.efficiency import run_efficiency

        gauges = {name: GaugeMetricFamily(f"cadre_run_{name}", text, labels=["run"])
                  for name, text in EFFICIENCY_HELP.items()}
        for run in runs:
            block = run_efficiency(self.store, run, self.store.items.many(self.store.items.ids_of_run(run.id)),
                                   self.store.usage.totals(run.id))
            for name, gauge in gauges.items():
                gauge.add_metric([run.id], float(block[name] or 0.0))
        yield from gauges.values()

    @staticmethod
    def _usage(sums: dict[str, float]):
        tokens = CounterMetricFamily("cadre_tokens", "Model tokens used, by role", labels=["role"])
        cost = CounterMetricFamily("cadre_cost_usd", "Model cost in USD, by role", labels=["role"])
        for role in ROLES:
            tokens.add_metric([role], sums.get(f"tokens:{role}", 0.0))
            cost.add_metric([role], sums.get(f"cost_usd:{role}", 0.0))
        return tokens, cost

    @staticmethod
    def _attempts(sums: dict[str, float]) -> HistogramMetricFamily:
        family = HistogramMetricFamily("cadre_attempt_duration_seconds", "Duration of work item attempts",
                                       labels=["outcome"])
        outcomes = {field.split(":")[1] for field in sums if field.startswith("attempt:")}
        for outcome in sorted(outcomes):
            running, buckets = 0.0, []
            for bound in [*(f"{b:g}" for b in ATTEMPT_BUCKETS), "+Inf"]:
                running += sums.get(f"attempt:{outcome}:le:{bound}", 0.0)
                buckets.append((bound, running))
            family.add_metric([outcome], buckets, sum_value=sums.get(f"attempt:{outcome}:sum", 0.0))
        return family


def serve(store: Store, port: int, address: str) -> None:
    """Serve `/metrics` on `address:port` until the process is stopped."""
    import signal
    import threading

    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(CadreCollector(store))
    start_http_server(port, addr=address, registry=registry)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()

