# syntax=docker/dockerfile:1
# Container image of the `tweetoscope` binary (every stage is a subcommand of it).
#
#   docker build -t registry.gitlab.com/tweetoscope/tweetoscope:latest .
#   docker run --rm registry.gitlab.com/tweetoscope/tweetoscope:latest --help
#
# Two stages: a Rust builder (librdkafka is compiled from source by rdkafka-sys with its own
# configure + make, and OpenSSL by openssl-src for TLS and SCRAM, so the builder needs make, a
# C/C++ compiler and perl, which the rust image has), and a slim Debian runtime with the binary
# only (OpenSSL is linked in statically). The bundled NEWS index is compiled into the binary.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# Build tools of librdkafka and of the vendored OpenSSL (its Configure is a perl script), pinned by
# the Debian release of the base image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make g++ perl pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*

# 1. Dependencies only: the manifests with placeholder sources for every target
#    (scripts/deploy/cargo-stubs.sh), so that this expensive layer (every crate of Cargo.lock,
#    librdkafka included) is reused until a manifest changes.
COPY Cargo.toml Cargo.lock ./
COPY crates/tweetoscope/Cargo.toml crates/tweetoscope/Cargo.toml
COPY crates/tweetoscope-cascade/Cargo.toml crates/tweetoscope-cascade/Cargo.toml
COPY crates/tweetoscope-forest/Cargo.toml crates/tweetoscope-forest/Cargo.toml
COPY crates/tweetoscope-hawkes/Cargo.toml crates/tweetoscope-hawkes/Cargo.toml
COPY crates/tweetoscope-messages/Cargo.toml crates/tweetoscope-messages/Cargo.toml
COPY crates/tweetoscope-predict/Cargo.toml crates/tweetoscope-predict/Cargo.toml
COPY crates/tweetoscope-replay/Cargo.toml crates/tweetoscope-replay/Cargo.toml
COPY crates/tweetoscope-stats/Cargo.toml crates/tweetoscope-stats/Cargo.toml
COPY scripts/deploy/cargo-stubs.sh /usr/local/bin/cargo-stubs
RUN sh /usr/local/bin/cargo-stubs \
    && cargo build --release --locked -p tweetoscope

# 2. The real sources (over the placeholders), touched so that cargo rebuilds the workspace crates.
COPY data data
COPY crates crates
RUN find crates -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p tweetoscope \
    && install -D -m 0755 target/release/tweetoscope /out/tweetoscope

FROM ${RUNTIME_IMAGE} AS runtime
# ca-certificates: HTTPS to Loki, Alertmanager or a Pushgateway, and the CAs librdkafka finds
# for a TLS listener when no ssl.ca.location is given; zlib1g: librdkafka's compression.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 tweetoscope \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin tweetoscope
COPY --from=builder /out/tweetoscope /usr/local/bin/tweetoscope
USER 10001:10001
# Every stage serves /metrics, /healthz and /readyz here when TWEETOSCOPE_METRICS_ADDR=0.0.0.0:9100.
ENV TWEETOSCOPE_METRICS_ADDR=0.0.0.0:9100 \
    TWEETOSCOPE_LOG_FORMAT=json
EXPOSE 9100
ENTRYPOINT ["tweetoscope"]
CMD ["--help"]
