# The fake upstreams (tests/fakes: FakeOpenAI, and FakeBedrock, which verifies every SigV4
# signature with botocore) as one compose service for `make compose-test`.
# Build context: tests/ (docker-compose.test.yaml). Built from the same Debian base as our
# image, with the botocore that tests/requirements.txt pins.
ARG DEBIAN_RELEASE=bookworm
FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
# Behind a TLS-intercepting proxy: its CA certificates (PEM), trusted for the pip download.
ARG EXTRA_CA_CERTS=
COPY requirements.txt /tmp/requirements.txt
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
      printf '%s\n' "$EXTRA_CA_CERTS" >/usr/local/share/ca-certificates/extra-ca-certs.crt \
      && update-ca-certificates >/dev/null; fi \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install -q --disable-pip-version-check \
       --cert /etc/ssl/certs/ca-certificates.crt "$(grep '^botocore==' /tmp/requirements.txt)"
COPY fakes /opt/fakes/fakes
WORKDIR /opt/fakes
USER 65534:65534
EXPOSE 8000 8001 8099
CMD ["/opt/venv/bin/python", "-m", "fakes", "--host", "0.0.0.0"]
