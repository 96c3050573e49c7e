# Shell helpers shared by scripts/test, scripts/dev and .ci/run.
# Sourced, not run.

TANSU_VERSION=0.6.0

# Where cargo puts what it builds: CARGO_TARGET_DIR, a `build.target-dir` in
# a cargo config, or target/ (cargo itself says which).
cargo_target_dir() {
  cargo metadata --format-version 1 --no-deps 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null ||
    echo "${CARGO_TARGET_DIR:-target}"
}

# Installs tansu into ~/.cargo/bin unless it is there already (15–50 min once on 2 cores).
ensure_tansu() {
  if command -v tansu >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/tansu" ]; then
    return 0
  fi
  echo "installing tansu $TANSU_VERSION (once; it is cached in ~/.cargo/bin)" >&2
  cargo install --locked tansu --version "$TANSU_VERSION" --features dynostore,libsql
}

# The dashboard test drives a headless Chromium: installs Debian's chromium
# and chromium-driver when missing and this user may (root), else says what to install.
ensure_chromedriver() {
  if command -v chromedriver >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium and chromium-driver for the dashboard test" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      chromium chromium-driver >/dev/null || {
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends chromium chromium-driver >/dev/null
    }
  else
    echo "the dashboard test needs chromium and chromium-driver: sudo apt-get install chromium chromium-driver" >&2
  fi
}

# ensure_node: Node.js, for the browser client's unit tests.
ensure_node() {
  if command -v node >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing nodejs for the browser client's tests" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs >/dev/null || {
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends nodejs >/dev/null
    }
  else
    echo "the browser client's tests need Node.js: sudo apt-get install nodejs" >&2
  fi
}

# ensure_python_clients: a Python with the outside clients' libraries
# (e2e/tests/outside/requirements.txt, from PyPI) for the end-to-end tests;
# exports SESSIONFOLD_TEST_PYTHON. Uses python3 itself when it has the
# pinned versions, otherwise a virtual environment in .local/pyenv.
ensure_python_clients() {
  local req=e2e/tests/outside/requirements.txt venv=.local/pyenv
  local check='import sys
from importlib.metadata import version, PackageNotFoundError
from confluent_kafka.schema_registry.avro import AvroSerializer
def same(name, want):
    try:
        return version(name) == want
    except PackageNotFoundError:
        return False
pins = [l.split("#")[0].strip() for l in open(sys.argv[1])]
sys.exit(0 if all(same(p.split("==")[0].split("[")[0], p.split("==")[1]) for p in pins if "==" in p) else 1)'
  if python3 -c "$check" "$req" 2>/dev/null; then
    export SESSIONFOLD_TEST_PYTHON=python3
    return 0
  fi
  if ! "$venv/bin/python" -c "$check" "$req" 2>/dev/null; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing python3-venv for the outside-client tests" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null || {
          apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends python3-venv >/dev/null
        }
      fi
    fi
    echo "installing the outside clients (fastavro, confluent-kafka, pandas, DuckDB, pyarrow, openapi-spec-validator, Schemathesis) from PyPI into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --no-cache-dir --disable-pip-version-check -r "$req"
  fi
  SESSIONFOLD_TEST_PYTHON="$(cd "$venv" && pwd)/bin/python"
  export SESSIONFOLD_TEST_PYTHON
}

# ensure_tools_python: a Python with the checks' own libraries
# (scripts/requirements-tools.txt, from PyPI) in .local/toolenv; exports
# TOOLS_PYTHON.
ensure_tools_python() {
  local req=scripts/requirements-tools.txt venv=.local/toolenv stamp
  stamp=$(sha256sum "$req" | cut -c1-16)
  if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "installing the checks' Python libraries from PyPI into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --no-cache-dir --disable-pip-version-check -r "$req"
    echo "$stamp" >"$venv/.stamp"
  fi
  TOOLS_PYTHON="$(cd "$venv" && pwd)/bin/python"
  export TOOLS_PYTHON
}

tansu_bin() {
  command -v tansu 2>/dev/null || echo "$HOME/.cargo/bin/tansu"
}

# A free TCP port on loopback.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_broker ADDR STORAGE LOG: starts tansu on ADDR in the background and
# waits until it accepts connections; sets BROKER_PID.
start_broker() {
  local addr=$1 storage=$2 log=$3
  "$(tansu_bin)" broker \
    --listener-url "tcp://$addr" \
    --advertised-listener-url "tcp://$addr" \
    --storage-engine "$storage" >"$log" 2>&1 &
  BROKER_PID=$!
  local host=${addr%:*} port=${addr##*:}
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
      echo "tansu exited; its log:" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "tansu did not listen on $addr within 10s" >&2
  return 1
}

stop_broker() {
  if [ -n "${BROKER_PID:-}" ]; then
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=
  fi
}

# --- Apache Kafka (single node, KRaft) for the tests ------------------------
# The version is pinned in scripts/kafka/pom.xml; Maven fetches the broker's
# jars from Maven Central into ~/.m2 once, and nothing else is downloaded.

# Prints the broker's Java classpath, resolving it with Maven when the POM
# changed since the last time (cached under .local/kafka/).
kafka_classpath() {
  local pom=scripts/kafka/pom.xml cache=.local/kafka
  mkdir -p "$cache"
  local sum
  sum=$(sha256sum "$pom" | cut -c1-16)
  if [ ! -s "$cache/classpath-$sum" ]; then
    command -v mvn >/dev/null 2>&1 || {
      echo "Apache Kafka for the tests needs Maven and Java 17 (apt-get install maven openjdk-17-jre-headless)" >&2
      return 1
    }
    echo "resolving Apache Kafka's jars with Maven (once; cached in ~/.m2)" >&2
    mvn -q -B -f "$pom" dependency:build-classpath -Dmdep.outputFile="$PWD/$cache/classpath-$sum.tmp" >&2 || return 1
    mv "$cache/classpath-$sum.tmp" "$cache/classpath-$sum"
  fi
  cat "$cache/classpath-$sum"
}

# start_kafka PORT DIR [EXTRA_PROPERTIES_FILE]: formats a fresh KRaft store in
# DIR, starts a combined broker and controller on 127.0.0.1:PORT (controller
# on a free port), waits until it answers a metadata request; sets KAFKA_PID.
# Its log is DIR/broker.log.
# The SCRAM user of the SASL_SSL listener that start_kafka can add.
KAFKA_SCRAM_USER=sessionfold
KAFKA_SCRAM_PASSWORD=sessionfold-test-password

# kafka_tls DIR: a throw-away CA and a broker certificate for 127.0.0.1 in
# DIR (ca.pem, broker.p12 with password "changeit").
kafka_tls() {
  local dir=$1
  mkdir -p "$dir"
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
      -subj "/CN=sessionfold-test-ca" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr \
      -subj "/CN=127.0.0.1" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
      -out broker.pem -days 2 -extfile san.ext 2>/dev/null
    openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem \
      -out broker.p12 -passout pass:changeit
  )
}

# start_kafka PORT DIR [EXTRA_PROPERTIES_FILE] [SECURE_PORT]: Apache Kafka,
# KRaft, one node, PLAINTEXT on PORT; with SECURE_PORT also a SASL_SSL
# listener there (SCRAM-SHA-512, user $KAFKA_SCRAM_USER, a test CA in
# DIR/tls/ca.pem).
start_kafka() {
  kafka_format "$@" || return 1
  run_kafka "$2"
}

# kafka_format PORT DIR [EXTRA_PROPERTIES_FILE] [SECURE_PORT]: writes the
# broker's settings to DIR/server.properties and formats a fresh KRaft store
# in DIR (see start_kafka).
kafka_format() {
  local port=$1 dir=$2 extra=${3:-} secure=${4:-}
  local cp controller listeners advertised abs
  cp=$(kafka_classpath) || return 1
  controller=$(free_port)
  rm -rf "$dir"
  mkdir -p "$dir/data"
  abs=$(cd "$dir" && pwd)
  listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller"
  advertised="PLAINTEXT://127.0.0.1:$port"
  if [ -n "$secure" ]; then
    kafka_tls "$dir/tls" || return 1
    listeners="$listeners,SASL_SSL://127.0.0.1:$secure"
    advertised="$advertised,SASL_SSL://127.0.0.1:$secure"
  fi
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
log.dirs=$abs/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.consumer.min.session.timeout.ms=1000
group.classic.min.session.timeout.ms=1000
log.cleaner.backoff.ms=1000
PROPS
  local format_extra=()
  if [ -n "$secure" ]; then
    cat >>"$dir/server.properties" <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$abs/tls/broker.p12
ssl.keystore.password=changeit
ssl.key.password=changeit
PROPS
    format_extra=(--add-scram "SCRAM-SHA-512=[name=$KAFKA_SCRAM_USER,password=$KAFKA_SCRAM_PASSWORD]")
  fi
  if [ -n "$extra" ]; then cat "$extra" >>"$dir/server.properties"; fi
  local java_opts=(-Xms256m -Xmx768m -XX:+UseG1GC "-Dlog4j2.configurationFile=$PWD/scripts/kafka/log4j2.properties")
  java "${java_opts[@]}" -cp "$cp" kafka.tools.StorageTool format \
    -t "$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)" \
    -c "$dir/server.properties" "${format_extra[@]}" >"$dir/format.log" 2>&1 || {
    echo "formatting the Kafka store failed:" >&2
    cat "$dir/format.log" >&2
    return 1
  }
}

# run_kafka DIR: starts the Kafka formatted in DIR (by start_kafka) and waits
# until it serves; used again to restart it on the same data. Its log goes
# to $KAFKA_LOG when set, else DIR/broker.log.
run_kafka() {
  local dir=$1 log=${KAFKA_LOG:-$1/broker.log} cp
  cp=$(kafka_classpath) || return 1
  local java_opts=(-Xms256m -Xmx768m -XX:+UseG1GC "-Dlog4j2.configurationFile=$PWD/scripts/kafka/log4j2.properties")
  local before
  before=$(grep -c "Kafka Server started" "$log" 2>/dev/null || true)
  java "${java_opts[@]}" -cp "$cp" kafka.Kafka "$dir/server.properties" >>"$log" 2>&1 &
  KAFKA_PID=$!
  for _ in $(seq 1 600); do
    if [ "$(grep -c "Kafka Server started" "$log" 2>/dev/null || true)" -gt "${before:-0}" ]; then
      return 0
    fi
    if ! kill -0 "$KAFKA_PID" 2>/dev/null; then
      echo "Apache Kafka exited; its log:" >&2
      tail -n 50 "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "Apache Kafka did not start within 60 s; its log: $log" >&2
  return 1
}

# start_kafka_kept PORT DIR LOG: Apache Kafka on 127.0.0.1:PORT that keeps its
# data in DIR across runs: formatted the first time, started again on the
# same data afterwards (on PORT, whatever port it had before).
start_kafka_kept() {
  local port=$1 dir=$2 log=$3
  if [ -f "$dir/data/meta.properties" ] && [ -f "$dir/server.properties" ]; then
    local controller abs
    controller=$(free_port)
    abs=$(cd "$dir" && pwd)
    sed -i -E \
      -e "s#^listeners=.*#listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller#" \
      -e "s#^advertised.listeners=.*#advertised.listeners=PLAINTEXT://127.0.0.1:$port#" \
      -e "s#^controller.quorum.voters=.*#controller.quorum.voters=1@127.0.0.1:$controller#" \
      -e "s#^log.dirs=.*#log.dirs=$abs/data#" \
      "$dir/server.properties"
    KAFKA_LOG=$log run_kafka "$dir"
  else
    KAFKA_LOG=$log start_kafka "$port" "$dir"
  fi
}

# start_registry PORT DIR: a Schema Registry with the Confluent API on
# 127.0.0.1:PORT (Apicurio Registry assembled from Maven Central by
# scripts/registry/pom.xml; in-memory storage). Its base URL for clients is
# http://127.0.0.1:PORT/apis/ccompat/v6. Log: DIR/registry.log.
start_registry() {
  local port=$1 dir=$2
  local runner=scripts/registry/target/quarkus-app/quarkus-run.jar
  if [ ! -f "$runner" ]; then
    echo "building the test Schema Registry with Maven (once)" >&2
    mvn -q -B -f scripts/registry/pom.xml package -DskipTests >"$dir.build.log" 2>&1 || {
      echo "building the Schema Registry failed:" >&2
      tail -n 30 "$dir.build.log" >&2
      return 1
    }
  fi
  rm -rf "$dir"
  mkdir -p "$dir/config"
  # The registry's runtime settings ship inside its own jar.
  local app
  app=$(ls scripts/registry/target/quarkus-app/lib/main/io.apicurio.apicurio-registry-app-*.jar | head -n1)
  unzip -p "$app" application.properties >"$dir/config/application.properties"
  local jar
  jar="$(pwd)/$runner"
  (cd "$dir" && exec java -Xmx256m -Dquarkus.http.port="$port" -Dquarkus.http.host=127.0.0.1 \
    -jar "$jar" >registry.log 2>&1) &
  REGISTRY_PID=$!
  for _ in $(seq 1 600); do
    if curl -fsS -m 1 "http://127.0.0.1:$port/apis/ccompat/v6/subjects" >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$REGISTRY_PID" 2>/dev/null; then
      echo "the Schema Registry exited; its log:" >&2
      tail -n 30 "$dir/registry.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "the Schema Registry did not start within 60 s; its log: $dir/registry.log" >&2
  return 1
}

stop_registry() {
  if [ -n "${REGISTRY_PID:-}" ]; then
    kill "$REGISTRY_PID" 2>/dev/null || true
    wait "$REGISTRY_PID" 2>/dev/null || true
    REGISTRY_PID=
  fi
}

stop_kafka() {
  if [ -n "${KAFKA_PID:-}" ]; then
    kill "$KAFKA_PID" 2>/dev/null || true
    for _ in $(seq 1 300); do
      kill -0 "$KAFKA_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$KAFKA_PID" 2>/dev/null || true
    wait "$KAFKA_PID" 2>/dev/null || true
    KAFKA_PID=
  fi
}
