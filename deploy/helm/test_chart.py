"""Reads the manifests `helm template` renders from the chart and checks
what a running install depends on: probes, the processor's volume and
static membership, the security context, and every setting the services
need. Run by scripts/helm-check with the default values and with
values-managed-kafka.yaml:

    python3 deploy/helm/test_chart.py default.yaml managed.yaml
"""

import os
import sys

import yaml

STATE = "/var/lib/sessionfold/state"
ALERTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../prometheus/alerts.yml")


def load(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    by = {}
    for d in docs:
        by.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    return by


def one(by, kind, suffix):
    found = [d for n, d in by.get(kind, {}).items() if n.endswith(suffix)]
    assert len(found) == 1, f"one {kind} named *{suffix}, found {len(found)}"
    return found[0]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def check_pod(workload, config, service, port):
    spec = workload["spec"]["template"]["spec"]
    pod_sc = spec["securityContext"]
    assert pod_sc["runAsNonRoot"] is True, service
    assert pod_sc["runAsUser"] != 0, service
    [c] = spec["containers"]
    assert c["args"][0] == f"sessionfold-{service}", c["args"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, service
    assert sc["capabilities"]["drop"] == ["ALL"], service
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, service
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, service
    assert c["ports"] == [{"name": "http", "containerPort": port}], service
    env = env_of(c)
    assert env["SESSIONFOLD_LISTEN"]["value"] == f"0.0.0.0:{port}", service
    assert c["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}], service
    assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"], service
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert mounts["tmp"]["mountPath"] == "/tmp" and "emptyDir" in volumes["tmp"], service
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/config"], service
    return c, env, mounts, volumes, annotations


def check(path, managed):
    by = load(path)
    config = one(by, "ConfigMap", "-sessionfold-config")["data"]
    cm = one(by, "ConfigMap", "-sessionfold-config")
    for key in ["SESSIONFOLD_BROKERS", "SESSIONFOLD_TOPIC_PREFIX", "SESSIONFOLD_PARTITIONS",
                "SESSIONFOLD_IDLE_TIMEOUT", "SESSIONFOLD_REPLICATION_FACTOR"]:
        assert config.get(key), key
    # Topics are the operator's by default, and declared for them.
    assert config["SESSIONFOLD_CREATE_TOPICS"] == "false"
    topics = yaml.safe_load(one(by, "ConfigMap", "-sessionfold-topics")["data"]["topics.yaml"])
    names = [t["name"].split(".", 1)[1] for t in topics]
    assert names == ["activity", "imports", "presence", "import-ownership", "dead-letter", "erasures"], names
    parts = {t["partitions"] for t in topics if t["name"].split(".", 1)[1] != "erasures"}
    assert parts == {int(config["SESSIONFOLD_PARTITIONS"])}, parts
    # Kafka takes retention in milliseconds, not the services' "30d".
    by_name = {t["name"].split(".", 1)[1]: t for t in topics}
    assert by_name["activity"]["config"]["retention.ms"] == str(30 * 86_400_000), by_name["activity"]
    assert by_name["presence"]["config"]["cleanup.policy"] == "compact"
    assert all(t["config"]["min.insync.replicas"] == "2" and t["replicationFactor"] == 3 for t in topics)
    script = one(by, "ConfigMap", "-sessionfold-topics")["data"]["create-topics.sh"]
    calls = [l for l in script.splitlines() if l.startswith("kafka-topics.sh ")]
    assert len(calls) == 6 and all("--if-not-exists" in c and "--replication-factor 3" in c for c in calls), calls
    assert "--topic sessionfold.activity --partitions 6" in calls[0] or managed, calls[0]

    processor = one(by, "StatefulSet", "-sessionfold-processor")
    c, env, mounts, _, _ = check_pod(processor, cm, "processor", 8082)
    assert c["args"] == ["sessionfold-processor", "run"]
    assert env["SESSIONFOLD_STATE_DIR"]["value"] == STATE
    assert mounts["state"]["mountPath"] == STATE
    [claim] = processor["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "state" and claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    # Static membership from the pod name: a restarted pod takes its
    # partitions back without waiting out the session timeout.
    assert env["SESSIONFOLD_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # Warm copies on every pod: a lost node's partitions are taken from
    # them within a second of the session timeout.
    assert env["SESSIONFOLD_STANDBY_REPLICAS"]["value"] == "1"
    assert env["SESSIONFOLD_HEARTBEAT_INTERVAL"]["value"] == "500ms"
    assert processor["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 25
    assert "SESSIONFOLD_JWT_SECRET" not in env, "the processor serves no tokens"

    for service, port in [("producer", 8080), ("projections", 8081)]:
        d = one(by, "Deployment", f"-sessionfold-{service}")
        c, env, mounts, volumes, annotations = check_pod(d, cm, service, port)
        assert c["args"] == [f"sessionfold-{service}", "serve"]
        if managed:
            assert "SESSIONFOLD_JWT_SECRET" not in env
            assert config["SESSIONFOLD_JWT_JWKS"].startswith("https://")
            assert config["SESSIONFOLD_JWT_AUDIENCE"] == "sessionfold"
            assert config["SESSIONFOLD_JWT_CLAIMS"] == "keycloak"
            assert "sf-admin=admin" in config["SESSIONFOLD_JWT_ROLE_MAP"]
        else:
            ref = env["SESSIONFOLD_JWT_SECRET"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "sessionfold-jwt", "key": "jwt-secret"}, ref
        assert ("prometheus.io/scrape" in annotations) == (not managed), service
        if service == "projections":
            # The snapshot is written on the scratch volume, not the read-only root.
            assert env["SESSIONFOLD_SNAPSHOT_DIR"]["value"].startswith(mounts["tmp"]["mountPath"])
    producer = one(by, "Deployment", "-sessionfold-producer")
    penv = env_of(producer["spec"]["template"]["spec"]["containers"][0])
    hpa = one(by, "HorizontalPodAutoscaler", "-sessionfold-producer")
    assert hpa["spec"]["scaleTargetRef"]["name"] == producer["metadata"]["name"]
    assert "replicas" not in producer["spec"], "the autoscaler owns the producer's replicas"
    pdbs = by["PodDisruptionBudget"]
    assert len(pdbs) == 3 and all(p["spec"]["selector"]["matchLabels"] for p in pdbs.values())

    if managed:
        props = config["SESSIONFOLD_KAFKA_PROPERTIES"]
        assert "security.protocol=SASL_SSL" in props and "sasl.mechanism=SCRAM-SHA-512" in props, props
        assert "password" not in props, "no password in a ConfigMap"
        for workload in [processor, producer]:
            c = workload["spec"]["template"]["spec"]["containers"][0]
            env, mounts = env_of(c), {m["name"]: m for m in c["volumeMounts"]}
            assert env["SESSIONFOLD_KAFKA_PROPERTIES_FILE"]["value"] == "/etc/sessionfold/kafka-secret/kafka.properties"
            assert mounts["kafka-secret"]["readOnly"] and mounts["kafka-tls"]["mountPath"] == "/etc/sessionfold/kafka-tls"
        assert penv["SESSIONFOLD_END_TICKET_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "sessionfold-tickets"
        assert penv["SESSIONFOLD_CORS_ORIGIN"]["value"] == "https://app.example.com"
        monitor = one(by, "ServiceMonitor", "-sessionfold-metrics")
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
        rule = one(by, "PrometheusRule", "-sessionfold-alerts")
        assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        shipped = yaml.safe_load(open(ALERTS))["groups"]
        assert rule["spec"]["groups"] == shipped, "the PrometheusRule differs from deploy/prometheus/alerts.yml"
    else:
        assert "ServiceMonitor" not in by and "PrometheusRule" not in by
    return len(sum((list(v.values()) for v in by.values()), []))


def main():
    default, managed = sys.argv[1:3]
    n = check(default, managed=False)
    m = check(managed, managed=True)
    print(f"chart: {n} objects with the default values, {m} for a managed Kafka, as expected")


if __name__ == "__main__":
    main()
