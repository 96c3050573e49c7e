# One image with the three sessionfold binaries.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --workspace --bins \
 && cp target/release/sessionfold-producer target/release/sessionfold-processor \
       target/release/sessionfold-projections /usr/local/bin/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/sessionfold --create-home sessionfold
COPY --from=build /usr/local/bin/sessionfold-* /usr/local/bin/
USER sessionfold
WORKDIR /var/lib/sessionfold
ENV SESSIONFOLD_LOG_FORMAT=json
