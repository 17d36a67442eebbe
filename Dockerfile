# unigate image: the `unigate` binary (sidecar / CLI) and the filter module unigate.wasm.
#
#   docker build -t unigate:0.1.0 .
#
# Needs BuildKit (the cache mounts below): the default builder of Docker >= 23 and of
# `docker compose`; with Docker 20.10 (Debian's docker.io) set DOCKER_BUILDKIT=1.
#
# The image does not contain Envoy. It is used three ways:
#   * `unigate sidecar` (the default command): the credentials server next to an Envoy
#     container that shares its network namespace (docker-compose.yaml, Kubernetes pod);
#   * as the source of /etc/unigate/unigate.wasm, copied by a one-shot init container into a
#     volume that Envoy mounts at /etc/unigate (docker-compose.yaml, deploy/kubernetes);
#   * `unigate serve --print-config` to render an Envoy configuration for this deployment.
#
# Only Debian is needed to build it: the builder uses Debian's Rust (rustc-web with its std
# source, lld, wasi-libc) and the project's own scripts/build-wasm.sh, the route `make run`
# takes on a Debian machine, so nothing is fetched by rustup. `make compose-test` (run by CI)
# builds this file and runs docker-compose.yaml with the result.

ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------- builder
FROM debian:${DEBIAN_RELEASE}-slim AS builder
# rustc-web, cargo-web: Rust >= the workspace's rust-version, for the host (the sidecar) and,
# with rust-web-src (std's source, built with -Zbuild-std), lld (wasm-ld) and wasi-libc, for
# wasm32-wasip1 (the filter). gcc, libc6-dev: C parts of the sidecar's TLS stack (aws-lc-sys).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       ca-certificates gcc libc6-dev rustc-web cargo-web rust-web-src lld wasi-libc \
    && rm -rf /var/lib/apt/lists/*
# Building behind a TLS-intercepting proxy: its CA certificates (PEM text), trusted while
# cargo downloads crates. Only this stage sees them; the runtime image does not.
ARG EXTRA_CA_CERTS=
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
      printf '%s\n' "$EXTRA_CA_CERTS" >/usr/local/share/ca-certificates/extra-ca-certs.crt \
      && update-ca-certificates >/dev/null; fi
WORKDIR /src
# Only what the Rust build reads, so a change to docs or tests does not rerun it.
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY core core
COPY sidecar sidecar
COPY scripts/build-wasm.sh scripts/build-wasm.sh
# Cache mounts keep the crates and the target directories between builds: after a source
# change only the workspace's own crates are compiled again. The outputs are copied out of
# the cache into /out, which the runtime stage takes them from.
# --locked: build exactly what Cargo.lock pins (build-wasm.sh then finds it complete).
RUN --mount=type=cache,target=/root/.cargo/registry \
    --mount=type=cache,target=/root/.cargo/git \
    --mount=type=cache,target=/src/target \
    cargo fetch --locked \
    && cargo build --locked --release -p unigate-sidecar \
    && scripts/build-wasm.sh \
    && mkdir -p /out \
    && cp target/release/unigate /out/unigate \
    && cp build/unigate.wasm /out/unigate.wasm

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
COPY --from=builder /out/unigate /usr/local/bin/unigate
COPY --from=builder /out/unigate.wasm /etc/unigate/unigate.wasm
# `unigate serve` inside this image (or --print-config) points Envoy at the bundled filter.
ENV UNIGATE_WASM=/etc/unigate/unigate.wasm
# The Files API's local storage (and, with S3_FILES_BUCKET, its upload spool): a volume
# mount point, so the root filesystem can stay read-only.
ENV FILES_DIR=/var/lib/unigate/files
USER 10001:10001
WORKDIR /home/unigate
ENTRYPOINT ["unigate"]
CMD ["sidecar"]
