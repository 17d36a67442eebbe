# unigate image: the `unigate` binary (sidecar / CLI) and the filter module unigate.wasm.
#
#   docker build -t unigate:0.1.0 .
#
# The image does not contain Envoy. It is used three ways:
#   * `unigate sidecar` (the default command): the credentials server next to an Envoy
#     container that shares its network namespace (docker-compose.yaml, Kubernetes pod);
#   * as the source of /etc/unigate/unigate.wasm, copied by a one-shot init container into a
#     volume that Envoy mounts at /etc/unigate (docker-compose.yaml, deploy/kubernetes);
#   * `unigate serve --print-config` to render an Envoy configuration for this deployment.
#
# No Docker engine runs on the project's build machines: this file is checked by
# tests/test_deploy_manifests.py (paths, user, entrypoint), not built in CI.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------- builder
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# The filter is built for wasm32-wasip1 with rustup's target (scripts/build-wasm.sh's first
# route); the sidecar for the host.
RUN rustup target add wasm32-wasip1
WORKDIR /src
COPY . .
# --locked: build exactly what Cargo.lock pins.
RUN cargo build --locked --release -p unigate-sidecar
RUN cargo build --locked -p unigate-filter --profile wasm --target wasm32-wasip1

# ---------------------------------------------------------------------------- runtime
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: the sidecar's calls to AWS (STS, SSO, S3) verify TLS against the system CAs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A fixed non-root uid/gid, so Kubernetes `runAsNonRoot` can verify it. The home directory
# is where a mounted ~/.aws (profiles, SSO cache) goes: /home/unigate/.aws.
# /srv/unigate-wasm and /var/lib/unigate/files are owned by that user: a named volume
# mounted there starts with this ownership, so the non-root containers can write into it
# (the init container copies the filter; the sidecar stores or spools uploaded files).
RUN groupadd --system --gid 10001 unigate \
    && useradd --system --uid 10001 --gid unigate --create-home --home-dir /home/unigate \
       --shell /usr/sbin/nologin unigate \
    && mkdir -p /srv/unigate-wasm /var/lib/unigate/files \
    && chown unigate:unigate /srv/unigate-wasm /var/lib/unigate/files
COPY --from=builder /src/target/release/unigate /usr/local/bin/unigate
COPY --from=builder /src/target/wasm32-wasip1/wasm/unigate.wasm /etc/unigate/unigate.wasm
# `unigate serve` inside this image (or --print-config) points Envoy at the bundled filter.
ENV UNIGATE_WASM=/etc/unigate/unigate.wasm
# The Files API's local storage (and, with S3_FILES_BUCKET, its upload spool): a volume
# mount point, so the root filesystem can stay read-only.
ENV FILES_DIR=/var/lib/unigate/files
USER 10001:10001
WORKDIR /home/unigate
ENTRYPOINT ["unigate"]
CMD ["sidecar"]
