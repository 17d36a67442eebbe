"""Fake unigate sidecar: only the internal credentials endpoint the filter calls.

GET /v1/internal/aws-credentials with `x-unigate-token: <token>` answers
200 {"access_key_id","secret_access_key","session_token"?,"expires_at"?}, or
503 {"error":{"message":...}} when it has no credentials. Tests steer it programmatically
(the filter, not the client, makes these calls): set_credentials(), delay_ms, status_override.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

from .bedrock import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN
from .server import FakeServer, RecordedRequest, Reply

CREDENTIALS_PATH = "/v1/internal/aws-credentials"
TOKEN_HEADER = "x-unigate-token"


class FakeSidecar(FakeServer):
    name = "sidecar"

    def __init__(self, token: str = "sidecar-test-token", **kw):
        super().__init__(**kw)
        self.token = token
        self._cred_lock = threading.Lock()
        self._creds: Optional[dict] = None
        self.set_credentials(DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, expires_in=3600)
        self.delay_ms = 0
        self.status_override: Optional[int] = None

    def set_credentials(
        self,
        access_key_id: Optional[str],
        secret_access_key: Optional[str] = None,
        session_token: Optional[str] = None,
        expires_in: Optional[int] = 3600,
    ) -> None:
        """Credentials to hand out; access_key_id=None means "none configured" (503)."""
        with self._cred_lock:
            if access_key_id is None:
                self._creds = None
                return
            c = {"access_key_id": access_key_id, "secret_access_key": secret_access_key}
            if session_token is not None:
                c["session_token"] = session_token
            if expires_in is not None:
                c["expires_at"] = int(time.time()) + expires_in
            self._creds = c

    @property
    def credentials(self) -> Optional[dict]:
        with self._cred_lock:
            return dict(self._creds) if self._creds else None

    def handle(self, rec: RecordedRequest, steer: dict) -> Reply:
        if self.delay_ms:
            self.sleep(self.delay_ms / 1000)
        path = rec.path.split("?", 1)[0]
        if path != CREDENTIALS_PATH:
            return self.json_reply(404, {"error": {"message": f"no such endpoint: {path}"}})
        if rec.method != "GET":
            return self.json_reply(405, {"error": {"message": "method not allowed"}})
        if rec.headers.get(TOKEN_HEADER) != self.token:
            return self.json_reply(401, {"error": {"message": "missing or wrong x-unigate-token"}})
        if self.status_override is not None:
            return self.json_reply(self.status_override, {"error": {"message": f"sidecar status {self.status_override} (steered)"}})
        creds = self.credentials
        if creds is None:
            return self.json_reply(
                503,
                {"error": {"message": "No AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with a role."}},
            )
        return self.json_reply(200, creds)
