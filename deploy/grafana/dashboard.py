"""Writes deploy/grafana/sessionfold.json, the Grafana dashboard of the three
services, from the panel list below (run it after changing a panel; CI
checks that the JSON is what this writes)."""

import json
import sys
from pathlib import Path

DS = {"type": "prometheus", "uid": "${datasource}"}

# (title, unit, [(PromQL, legend)], description)
PANELS = [
    ("Ingest: events accepted", "ops",
     [("sum by (kind) (rate(sessionfold_producer_events_accepted_total[1m]))", "{{kind}}")],
     "Events the ingest accepted, per second, by kind."),
    ("Ingest: refusals", "ops",
     [("sum by (reason) (rate(sessionfold_producer_requests_rejected_total[1m]))", "{{reason}}")],
     "Requests refused, by reason (invalid, forbidden, rate_limited, unavailable, …)."),
    ("Ingest: deliveries failing", "none",
     [("max(sessionfold_producer_deliveries_failing)", "failing"),
      ("sum(rate(sessionfold_producer_deliveries_total{result=\"failed\"}[5m]))", "failed/s")],
     "1 while deliveries to Kafka fail; failed deliveries per second."),
    ("Processor: lag", "short",
     [("sum by (topic) (sessionfold_processor_consumer_lag)", "{{topic}}")],
     "Input records not yet folded and stored, by topic."),
    ("Processor: stuck partitions and owned partitions", "short",
     [("sum(sessionfold_processor_partition_stuck)", "stuck"),
      ("sum(sessionfold_processor_partitions_assigned)", "owned")],
     "Owned partitions with records waiting that do not move, beside all owned."),
    ("Processor: dead letters by reason", "ops",
     [("sum by (reason) (rate(sessionfold_processor_dead_lettered_total[5m]))", "{{reason}}")],
     "Records sent to the dead-letter topic, per second, by reason."),
    ("Processor: states written per event", "short",
     [("sum(rate(sessionfold_processor_store_writes_total[5m])) / sum(rate(sessionfold_processor_committed_records_total[5m]))", "writes/event")],
     "States written to the store per input record: low when batches coalesce."),
    ("Freshness: batch published and stored, p99", "s",
     [("histogram_quantile(0.99, sum by (le) (rate(sessionfold_processor_commit_seconds_bucket[5m])))", "p99"),
      ("histogram_quantile(0.5, sum by (le) (rate(sessionfold_processor_commit_seconds_bucket[5m])))", "p50")],
     "From a batch's first record polled to its states published and stored: how stale a view can be."),
    ("Restore and takeover", "short",
     [("sum(sessionfold_processor_restoring_partitions)", "partitions restoring"),
      ("sum(rate(sessionfold_processor_restored_records_total[1m]))", "changelog records/s restored")],
     "Partitions being restored after an assignment, and the restore's pace."),
    ("Takeovers by kind", "short",
     [("sum by (kind) (increase(sessionfold_processor_takeovers_total[5m]))", "{{kind}}")],
     "Partitions taken on in the last 5 minutes: from the instance's own store, from a warm copy (standby), or restored from the whole changelog (full_restore). Full restores where standbys run mean the copies were missing or stale."),
    ("Takeover time p99 and warm copies", "short",
     [("histogram_quantile(0.99, sum by (le, kind) (rate(sessionfold_processor_takeover_seconds_bucket[15m])))", "p99 s, {{kind}}"),
      ("sum(sessionfold_processor_standby_partitions)", "partitions kept warm"),
      ("sum(rate(sessionfold_processor_standby_records_total[1m]))", "records/s copied")],
     "Seconds from an assignment to the partition folding, by kind of takeover; partitions kept warm by --standby-replicas and the pace of copying (each copy's lag, per partition, is the processor's standby_lag_seconds)."),
    ("Projections: stream subscribers", "short",
     [("sum(sessionfold_projections_stream_subscribers)", "subscribers")],
     "Open /v1/stream subscriptions."),
    ("Memory per session", "bytes",
     [("sum(sessionfold_processor_process_resident_memory_bytes) / sum(sessionfold_processor_state_entities{what=\"sessions\"})", "processor"),
      ("sum(sessionfold_projections_process_resident_memory_bytes) / sum(sessionfold_processor_state_entities{what=\"sessions\"})", "projections")],
     "Resident memory per session held."),
    ("Ready", "none",
     [("min by (instance) ({__name__=~\"sessionfold_(producer|processor|projections)_ready\"})", "{{instance}}")],
     "1 when the instance's /readyz answers ready."),
    ("HTTP p99 by route", "s",
     [("histogram_quantile(0.99, sum by (le, route) (rate({__name__=~\"sessionfold_(producer|projections)_http_request_seconds_bucket\"}[5m])))", "{{route}}")],
     "Answer time of the HTTP routes."),
]


def dashboard() -> dict:
    panels = []
    for i, (title, unit, targets, description) in enumerate(PANELS):
        panels.append({
            "id": i + 1,
            "type": "timeseries",
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
            "targets": [
                {"refId": chr(ord("A") + j), "datasource": DS, "expr": expr, "legendFormat": legend}
                for j, (expr, legend) in enumerate(targets)
            ],
        })
    return {
        "title": "sessionfold",
        "uid": "sessionfold",
        "tags": ["sessionfold"],
        "schemaVersion": 39,
        "time": {"from": "now-3h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": [{
            "name": "datasource", "label": "Prometheus", "type": "datasource",
            "query": "prometheus", "current": {}, "hide": 0,
        }]},
        "panels": panels,
    }


def main() -> int:
    out = Path(__file__).with_name("sessionfold.json")
    text = json.dumps(dashboard(), indent=2) + "\n"
    if sys.argv[1:] == ["--check"]:
        if out.read_text() != text:
            print(f"{out} differs from what {Path(__file__).name} writes; run it", file=sys.stderr)
            return 1
        return 0
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
