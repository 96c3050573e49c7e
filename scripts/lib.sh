# Shell helpers shared by scripts/test, scripts/dev and .ci/run.
# Sourced, not run.

TANSU_VERSION=0.6.0

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
