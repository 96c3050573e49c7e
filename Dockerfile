# One image with the three sessionfold binaries.
#
# Dependencies are built in their own layer (cargo-chef), so a change to
# sessionfold's code rebuilds only sessionfold. The binaries are stripped
# of debug information (the release profile keeps line tables for profiling).
FROM rust:1-bookworm AS chef
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/* \
 && cargo install cargo-chef --locked
WORKDIR /src

FROM chef AS plan
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=plan /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --workspace --bins \
 && for b in sessionfold-producer sessionfold-processor sessionfold-replay sessionfold-projections; do \
      strip --strip-debug "target/release/$b" && cp "target/release/$b" /usr/local/bin/; \
    done

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates zlib1g libssl3 curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --no-log-init --home-dir /var/lib/sessionfold --create-home --shell /usr/sbin/nologin sessionfold \
 && mkdir -p /var/lib/sessionfold/state \
 && chown -R sessionfold:sessionfold /var/lib/sessionfold
COPY --from=build /usr/local/bin/sessionfold-* /usr/local/bin/
USER sessionfold
WORKDIR /var/lib/sessionfold
ENV SESSIONFOLD_LOG_FORMAT=json \
    SESSIONFOLD_LISTEN=0.0.0.0:8080
# producer 8080, projections 8081, processor 8082 (each service listens on
# SESSIONFOLD_LISTEN; docker-compose.yml sets one per service).
EXPOSE 8080 8081 8082
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${SESSIONFOLD_LISTEN##*:}/readyz" >/dev/null || exit 1
