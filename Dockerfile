# syntax=docker/dockerfile:1.7
#
# One image for every Funnel binary: the services and the `funnel` operator CLI.
# A container picks its binary with its command (compose `command:`, Kubernetes `command:`);
# the default is the ingest service. Services: ingest, behavior-predictor, recommender.
#
# Stages
#   onnxruntime  the ONNX Runtime shared library, taken from the onnxruntime PyPI wheel
#   builder      compiles the binaries listed in BINARIES, caching crates and target/
#   runtime      debian slim + binaries + libonnxruntime + models/, run as a non-root user
#
#   docker build -t funnel:dev .                    (BuildKit, the default since Docker 23)
#   docker run --rm funnel:dev funnel --help
#
# Checked offline by scripts/validate-deploy.sh; see deploy/README.md.

ARG RUST_VERSION=1.95
ARG PYTHON_VERSION=3.12
ARG DEBIAN_RELEASE=bookworm
ARG ORT_VERSION=1.31.1

# --- onnxruntime -----------------------------------------------------------------------------
# The wheel carries a self-contained libonnxruntime.so (needs only glibc >= 2.28 and libstdc++),
# the same file scripts/setup.sh installs for development. pip picks the wheel for the platform
# being built, so amd64 and arm64 images both work.
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS onnxruntime
ARG ORT_VERSION
WORKDIR /tmp/ort
RUN --mount=type=cache,target=/root/.cache/pip \
    set -eux; \
    python -m pip download --no-deps --only-binary=:all: --dest . "onnxruntime==${ORT_VERSION}"; \
    python -m zipfile -e onnxruntime-*.whl wheel; \
    mkdir -p /opt/onnxruntime; \
    cp "wheel/onnxruntime/capi/libonnxruntime.so.${ORT_VERSION}" /opt/onnxruntime/; \
    ln -s "libonnxruntime.so.${ORT_VERSION}" /opt/onnxruntime/libonnxruntime.so; \
    rm -rf /tmp/ort

# --- builder ---------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# Keep downloaded .debs in the apt cache mounts instead of deleting them after each install.
RUN rm -f /etc/apt/apt.conf.d/docker-clean
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \
    apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      protobuf-compiler build-essential pkg-config zlib1g-dev libssl-dev

# The binaries this image carries, by Cargo bin name. A new service is one more word here.
ARG BINARIES="ingest behavior-predictor recommender funnel"

WORKDIR /src
# The whole workspace manifest set: members = ["crates/*", "tests"], and funnel-proto's
# build.rs compiles ../../proto. .dockerignore keeps target/, .tools/ and .git/ out.
COPY Cargo.toml Cargo.lock ./
COPY proto ./proto
COPY crates ./crates
COPY tests ./tests

# Dependencies are cached across builds by the registry, git and target/ cache mounts, so a
# source change recompiles only the workspace crates. target/ lives in a cache mount, so the
# binaries are copied out to /out/bin for the next stage.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    set -eux; \
    bins=""; \
    for bin in ${BINARIES}; do bins="${bins} --bin ${bin}"; done; \
    cargo build --release --locked ${bins}; \
    mkdir -p /out/bin; \
    for bin in ${BINARIES}; do cp "target/release/${bin}" /out/bin/; done

# --- runtime ---------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# The binaries need libc, libgcc_s, libz and libssl3 (Kafka TLS) from the base (librdkafka is linked in
# statically); libonnxruntime needs libstdc++; curl serves the healthcheck.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libstdc++6 libssl3 curl \
 && rm -rf /var/lib/apt/lists/*
# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 funnel \
 && useradd --system --uid 10001 --gid funnel --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin funnel

# ONNX Runtime and the models. behavior-predictor and recommender read them from
# models.runtime_library (default .tools/onnxruntime/libonnxruntime.so, a development path)
# and models.root (default `models`, relative to the working directory, so /opt/funnel/models
# from WORKDIR below). models/ also carries the files they read at start: behavior-predictor's
# policy.toml and recommender's rules.toml (policy.file and rules.file, default
# models/<file>, which resolves here as it does in the repository). Their deployments set
# the two model paths explicitly: FUNNEL_MODELS__* in docker-compose.yml, [models] in
# deploy/k8s/<service>.toml. They are not set here with ENV: every service rejects unknown
# keys, and ingest has no [models] section, so an image-wide FUNNEL_MODELS__* would stop
# ingest (exit 64). ORT_DYLIB_PATH is what the ort
# crate itself reads when no path is passed to it.
COPY --from=onnxruntime /opt/onnxruntime/ /opt/onnxruntime/
ENV ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so
COPY models/ /opt/funnel/models/
# Last: the layer that changes on every commit.
COPY --from=builder /out/bin/ /usr/local/bin/

WORKDIR /opt/funnel
USER 10001:10001
# Each service keeps its default ports (see `<binary> --print-config`):
#   ingest              gRPC 50051, admin HTTP 9464
#   behavior-predictor  gRPC 50052, admin HTTP 9465
#   recommender         gRPC 50053, admin HTTP 9466
# The admin port serves /metrics, /healthz (liveness) and /readyz (readiness).
EXPOSE 50051 9464 50052 9465 50053 9466
# The healthcheck is ingest's (admin 9464). A container on another admin port
# (behavior-predictor: 9465, recommender: 9466) overrides it, and one running the CLI
# disables it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["curl", "-fsS", "--max-time", "2", "-o", "/dev/null", "http://127.0.0.1:9464/readyz"]
# Services drain on SIGTERM within their 30 s grace period.
STOPSIGNAL SIGTERM
CMD ["ingest"]
