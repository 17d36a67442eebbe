"""Runs the real coding-agent CLIs hermetically, for tests that prove a front door with the
client users actually run:

- run_claude_code(): Claude Code in print mode against an Anthropic Messages endpoint
  (ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY, ANTHROPIC_MODEL).
- run_claude_code_bedrock(): Claude Code's Bedrock mode against a Bedrock runtime endpoint
  (CLAUDE_CODE_USE_BEDROCK, ANTHROPIC_BEDROCK_BASE_URL, AWS_BEARER_TOKEN_BEDROCK, AWS_REGION).
- run_codex(): `codex exec` with a custom Responses provider written to an isolated CODEX_HOME.

The CLIs are the versions pinned in tests/clients/package-lock.json, installed by
scripts/setup.sh (`npm ci`) into tests/clients/node_modules; $UNIGATE_CLAUDE_BIN and
$UNIGATE_CODEX_BIN override the paths. A missing CLI raises ClientNotInstalled at once.

Every run:
- gets a fresh temporary HOME (and CLAUDE_CONFIG_DIR / CODEX_HOME inside it), removed
  afterwards unless keep_home=True or $UNIGATE_KEEP_LOGS is set;
- starts from an environment built from scratch (PATH, LANG, TERM, TMPDIR and the variables
  below only): nothing of the caller's ANTHROPIC_*, OPENAI_*, AWS_*, CLAUDE_*, CODEX_* leaks in,
  ~/.aws is the empty temporary HOME's, and AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE point
  at empty files;
- has telemetry, update checks, error reporting and other non-essential traffic switched off
  (CLAUDE_QUIET_ENV; CODEX_QUIET_CONFIG) — checked by tests/test_clients_direct.py, which runs
  each CLI in a loopback-only network namespace and records every DNS lookup it makes;
- reads no stdin, is bounded by `timeout` seconds, and runs in its own session under a small
  supervisor (REAPER) that is a child subreaper: when the CLI exits or times out, every process
  it started — tool commands included, even detached background jobs — is killed and reaped.
  Nothing that the run did not start is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

REPO = Path(__file__).resolve().parents[1]
CLIENTS_DIR = REPO / "tests" / "clients"
NODE_BIN = CLIENTS_DIR / "node_modules" / ".bin"

DEFAULT_TIMEOUT_S = 120.0
TERM_GRACE_S = 5.0

# Claude Code (pinned version) honours each of these; together they leave only the API calls:
# no DNS lookup at all besides the base URL (see test_clients_direct.py). Without them it
# resolves api.anthropic.com and sends `HEAD /api/hello` to the base URL.
CLAUDE_QUIET_ENV = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
}
# Tools Claude Code may use without a permission prompt (print mode has nobody to answer one:
# a tool that needs approval is denied, and the model only sees the denial).
CLAUDE_ALLOWED_TOOLS = ("Bash", "Read", "Write", "Edit")

# The environment variable run_codex() puts the gateway key in (the provider's env_key).
CODEX_KEY_ENV = "UNIGATE_GATEWAY_KEY"
CODEX_PROVIDER_ID = "unigate"
# Codex (pinned version) without these resolves ab.chatgpt.com (analytics), and chatgpt.com,
# github.com and api.github.com (plugin marketplace sync). `--strict-config` makes an unknown
# key an error, so a version that renames one fails loudly instead of phoning home.
CODEX_QUIET_CONFIG = """\
check_for_update_on_startup = false

[analytics]
enabled = false

[feedback]
enabled = false

[features]
plugins = false
"""


class ClientNotInstalled(RuntimeError):
    pass


@dataclass
class ClientRun:
    """One finished (or timed-out) CLI run."""

    name: str
    argv: list
    cwd: str
    env: dict  # what the CLI got; secret values redacted
    returncode: Optional[int]
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    home: Optional[str] = None  # kept temporary HOME (keep_home / $UNIGATE_KEEP_LOGS), else None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def describe(self, tail: int = 3000) -> str:
        state = f"timed out after {self.seconds:.1f}s" if self.timed_out else f"exit {self.returncode} after {self.seconds:.1f}s"
        return (f"{self.name} {state}\nargv: {self.argv}\ncwd: {self.cwd}\n"
                f"--- stdout (tail) ---\n{self.stdout[-tail:]}\n--- stderr (tail) ---\n{self.stderr[-tail:]}")

    def check(self) -> "ClientRun":
        """Raises AssertionError (with the output) unless the run exited 0 in time."""
        if not self.ok:
            raise AssertionError(self.describe())
        return self

    def json(self):
        """stdout parsed as JSON (Claude Code with output_format="json")."""
        return json.loads(self.stdout)


# ---------------------------------------------------------------- finding the CLIs


def _installed(env_var: str, default: Path, what: str) -> str:
    p = Path(os.environ.get(env_var) or default)
    if not (p.is_file() and os.access(p, os.X_OK)):
        raise ClientNotInstalled(
            f"{what} is not installed: {p} is missing. Run scripts/setup.sh (it runs `npm ci` in tests/clients), "
            f"or set {env_var} to the executable."
        )
    return str(p)


def claude_bin() -> str:
    return _installed("UNIGATE_CLAUDE_BIN", NODE_BIN / "claude", "Claude Code")


def codex_bin() -> str:
    return _installed("UNIGATE_CODEX_BIN", NODE_BIN / "codex", "The Codex CLI")


def pinned_versions() -> dict:
    """{package name: exact version} from tests/clients/package.json."""
    return json.loads((CLIENTS_DIR / "package.json").read_text())["dependencies"]


# ---------------------------------------------------------------- running


def _base_env(home: Path) -> dict:
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LANG": "C.UTF-8", "TERM": "dumb",
           "HOME": str(home), "NO_COLOR": "1"}
    if os.environ.get("TMPDIR"):
        env["TMPDIR"] = os.environ["TMPDIR"]
    return env


# The CLI runs under this small supervisor (python -c REAPER cli args...). It makes itself a
# child subreaper, so every process the CLI starts stays its descendant even when a tool
# detaches (Claude Code's Bash tool runs commands in a new session, and a command's background
# job outlives the tool call). When the CLI exits, or on SIGTERM (after passing it on, 3 s
# grace, SIGKILL), it kills and reaps every descendant left, then exits with the CLI's status.
REAPER = r"""
import ctypes, os, signal, subprocess, sys, time
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
cli = subprocess.Popen(sys.argv[1:])
def on_alarm(signum, frame):
    os.kill(cli.pid, signal.SIGKILL)
def on_term(signum, frame):
    os.kill(cli.pid, signal.SIGTERM)
    signal.alarm(3)
signal.signal(signal.SIGALRM, on_alarm)
signal.signal(signal.SIGTERM, on_term)
code = cli.wait()
signal.alarm(0)
def children():
    out = []
    for t in os.listdir("/proc/self/task"):
        try:
            out += [int(c) for c in open(f"/proc/self/task/{t}/children").read().split()]
        except OSError:
            pass
    return out
deadline = time.monotonic() + 5
while time.monotonic() < deadline:
    kids = children()
    for k in kids:
        try:
            os.kill(k, signal.SIGKILL)
        except OSError:
            pass
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        if not kids:
            break
    time.sleep(0.02)
sys.exit(code if code >= 0 else 128 - code)
"""


def _session_members(sid: int) -> list:
    """PIDs whose session id is `sid` (the run's own session: start_new_session=True)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # after the command: state ppid pgrp session ...
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(d))
    return out


def _kill_session(sid: int) -> None:
    for pid in _session_members(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _run(name: str, argv: list, cwd, env: dict, timeout: float, secrets: Iterable[str], home: Path,
         keep_home: bool) -> ClientRun:
    cwd = str(cwd)
    if not Path(cwd).is_dir():
        raise ValueError(f"cwd {cwd} is not a directory")
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", REAPER, *argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.terminate()  # the supervisor stops the CLI and everything it started
        try:
            out, err = proc.communicate(timeout=TERM_GRACE_S + 5)
        except subprocess.TimeoutExpired:
            _kill_session(proc.pid)
            out, err = proc.communicate(timeout=TERM_GRACE_S)
    finally:
        if proc.poll() is None:  # an exception other than the timeout: never leave the CLI behind
            _kill_session(proc.pid)
            proc.wait(timeout=TERM_GRACE_S)
    seconds = time.monotonic() - t0
    shown = {k: ("<redacted>" if v in secrets and v else v) for k, v in env.items()}
    keep = keep_home or bool(os.environ.get("UNIGATE_KEEP_LOGS"))
    if not keep:
        shutil.rmtree(home, ignore_errors=True)
    return ClientRun(name=name, argv=list(argv), cwd=cwd, env=shown, returncode=None if timed_out else proc.returncode,
                     stdout=out.decode("utf-8", "replace"), stderr=err.decode("utf-8", "replace"), seconds=seconds,
                     timed_out=timed_out, home=str(home) if keep else None)


def _claude_argv(prompt: str, allowed_tools, permission_mode: Optional[str], output_format: str, extra_args) -> list:
    argv = [claude_bin(), "-p", "--output-format", output_format]
    if allowed_tools:
        argv += ["--allowedTools", ",".join(allowed_tools)]
    if permission_mode:
        argv += ["--permission-mode", permission_mode]
    return argv + list(extra_args) + ["--", prompt]


def _claude_common_env(home: Path, permission_mode: Optional[str], max_retries: Optional[int]) -> dict:
    env = _base_env(home)
    env.update(CLAUDE_QUIET_ENV)
    if max_retries is not None:
        env["CLAUDE_CODE_MAX_RETRIES"] = str(int(max_retries))
    env["CLAUDE_CONFIG_DIR"] = str(home / ".claude")
    # Claude Code refuses bypassPermissions / --dangerously-skip-permissions as root unless it is
    # told it runs in a sandbox (IS_SANDBOX=1); only set it where it is needed.
    if permission_mode == "bypassPermissions" and os.geteuid() == 0:
        env["IS_SANDBOX"] = "1"
    return env


def run_claude_code(
    base_url: str,
    api_key: str,
    model: str,
    prompt: str,
    cwd,
    extra_env: Optional[dict] = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    allowed_tools: Optional[Iterable[str]] = CLAUDE_ALLOWED_TOOLS,
    permission_mode: Optional[str] = None,
    output_format: str = "text",
    extra_args: Iterable[str] = (),
    auth: str = "api_key",
    max_retries: Optional[int] = 0,
    keep_home: bool = False,
) -> ClientRun:
    """`claude -p` against an Anthropic Messages endpoint at `base_url` (no /v1: Claude Code appends
    /v1/messages?beta=true). `auth="api_key"` sends the key as `x-api-key` (ANTHROPIC_API_KEY),
    `auth="bearer"` as `Authorization: Bearer` (ANTHROPIC_AUTH_TOKEN). `model` goes to
    ANTHROPIC_MODEL verbatim (e.g. a Bedrock model id). Tools in `allowed_tools` run without
    prompts; `permission_mode="bypassPermissions"` allows every tool (IS_SANDBOX=1 when root).
    `max_retries=0` (default; CLAUDE_CODE_MAX_RETRIES) makes a 401/5xx/529 fail the run at once
    instead of after minutes of backoff; None keeps Claude Code's retries. (A 400 is resent up to
    five more times with fewer betas/features whatever this says.)
    A value of None in `extra_env` removes that variable."""
    argv = _claude_argv(prompt, allowed_tools, permission_mode, output_format, extra_args)
    home = Path(tempfile.mkdtemp(prefix="unigate-claude-home-"))
    env = _claude_common_env(home, permission_mode, max_retries)
    env.update({"ANTHROPIC_BASE_URL": base_url, "ANTHROPIC_MODEL": model})
    if auth == "api_key":
        env["ANTHROPIC_API_KEY"] = api_key
    elif auth == "bearer":
        env["ANTHROPIC_AUTH_TOKEN"] = api_key
    else:
        raise ValueError(f"auth must be 'api_key' or 'bearer', not {auth!r}")
    _apply(env, extra_env)
    return _run("claude-code", argv, cwd, env, timeout, {api_key}, home, keep_home)


def run_claude_code_bedrock(
    base_url: str,
    bearer_token: Optional[str],
    model: str,
    prompt: str,
    cwd,
    region: str = "us-east-1",
    extra_env: Optional[dict] = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    allowed_tools: Optional[Iterable[str]] = CLAUDE_ALLOWED_TOOLS,
    permission_mode: Optional[str] = None,
    output_format: str = "text",
    extra_args: Iterable[str] = (),
    max_retries: Optional[int] = 0,
    aws_credentials: Optional[tuple] = None,
    keep_home: bool = False,
) -> ClientRun:
    """Claude Code's Bedrock mode against a Bedrock runtime endpoint at `base_url` (paths
    /model/{id}/invoke…, /inference-profiles). Auth, one of:
    - `bearer_token`: `Authorization: Bearer` (AWS_BEARER_TOKEN_BEDROCK; over plain HTTP too);
    - `aws_credentials=(access_key_id, secret, session_token or None)` with bearer_token=None:
      SigV4 (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, service `bedrock`);
    - neither: CLAUDE_CODE_SKIP_BEDROCK_AUTH=1, no Authorization at all (pair it with
      extra_env={"ANTHROPIC_CUSTOM_HEADERS": "x-gw-key: …"}).
    No other AWS credentials are visible: empty AWS config/credentials files, IMDS off."""
    if bearer_token is not None and aws_credentials is not None:
        raise ValueError("pass bearer_token or aws_credentials, not both")
    argv = _claude_argv(prompt, allowed_tools, permission_mode, output_format, extra_args)
    home = Path(tempfile.mkdtemp(prefix="unigate-claude-home-"))
    env = _claude_common_env(home, permission_mode, max_retries)
    aws = home / ".aws"
    aws.mkdir()
    (aws / "config").write_text("")
    (aws / "credentials").write_text("")
    env.update({
        "CLAUDE_CODE_USE_BEDROCK": "1",
        "ANTHROPIC_BEDROCK_BASE_URL": base_url,
        "ANTHROPIC_MODEL": model,
        "AWS_REGION": region,
        "AWS_CONFIG_FILE": str(aws / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(aws / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    })
    secrets = set()
    if bearer_token is not None:
        env["AWS_BEARER_TOKEN_BEDROCK"] = bearer_token
        secrets.add(bearer_token)
    elif aws_credentials is not None:
        akid, secret, token = (tuple(aws_credentials) + (None,))[:3]
        env.update({"AWS_ACCESS_KEY_ID": akid, "AWS_SECRET_ACCESS_KEY": secret})
        secrets.add(secret)
        if token:
            env["AWS_SESSION_TOKEN"] = token
            secrets.add(token)
    else:
        env["CLAUDE_CODE_SKIP_BEDROCK_AUTH"] = "1"
    _apply(env, extra_env)
    return _run("claude-code-bedrock", argv, cwd, env, timeout, secrets, home, keep_home)


def codex_config(base_url: str, model: str, sandbox: str = "danger-full-access", approval: str = "never",
                 extra_toml: str = "", max_retries: Optional[int] = 0) -> str:
    """The config.toml run_codex() writes: a custom Responses provider (`base_url` ending in /v1;
    Codex appends /responses) keyed by $UNIGATE_GATEWAY_KEY, no login, no prompts.
    `max_retries` sets the provider's request_max_retries and stream_max_retries (None: Codex's
    defaults, which retry a 401 five times and a 5xx some thirty times over ~25 s)."""
    retries = "" if max_retries is None else f"request_max_retries = {int(max_retries)}\nstream_max_retries = {int(max_retries)}\n"
    def q(s: str) -> str:
        return json.dumps(s)  # a JSON string is a valid TOML basic string

    return (
        f"model = {q(model)}\n"
        f"model_provider = {q(CODEX_PROVIDER_ID)}\n"
        f"approval_policy = {q(approval)}\n"
        f"sandbox_mode = {q(sandbox)}\n"
        f"{extra_toml.strip()}\n"
        f"{CODEX_QUIET_CONFIG}\n"
        f"[model_providers.{CODEX_PROVIDER_ID}]\n"
        f"name = \"unigate (test)\"\n"
        f"base_url = {q(base_url)}\n"
        f"env_key = {q(CODEX_KEY_ENV)}\n"
        f"wire_api = \"responses\"\n"
        f"{retries}"
    )


def run_codex(
    base_url: str,
    api_key: str,
    model: str,
    prompt: str,
    cwd,
    extra_env: Optional[dict] = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    sandbox: str = "danger-full-access",
    approval: str = "never",
    extra_toml: str = "",
    extra_args: Iterable[str] = (),
    json_events: bool = False,
    max_retries: Optional[int] = 0,
    keep_home: bool = False,
) -> ClientRun:
    """`codex exec` against a Responses endpoint; `base_url` is the gateway's `/v1`. The final
    agent message is on stdout, the transcript on stderr (`json_events=True`: JSONL events on
    stdout). Defaults run shell tool calls unsandboxed in `cwd` without approval prompts
    (sandbox_mode danger-full-access, approval_policy never); `extra_toml` adds root keys.
    `max_retries=0` (default) makes an error answer fail the run at once; None keeps Codex's
    own retries."""
    argv = [codex_bin(), "exec", "--skip-git-repo-check", "--strict-config", "--color", "never"]
    if json_events:
        argv.append("--json")
    argv += list(extra_args) + ["--", prompt]
    home = Path(tempfile.mkdtemp(prefix="unigate-codex-home-"))
    codex_home = home / ".codex"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(codex_config(base_url, model, sandbox, approval, extra_toml, max_retries))
    env = _base_env(home)
    env.update({"CODEX_HOME": str(codex_home), CODEX_KEY_ENV: api_key})
    _apply(env, extra_env)
    return _run("codex", argv, cwd, env, timeout, {api_key}, home, keep_home)


def _apply(env: dict, extra_env: Optional[dict]) -> None:
    for k, v in (extra_env or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
