"""Verifies AWS SigV4 signatures on requests the fake Bedrock receives, with botocore as the
oracle: we only parse the Authorization header and rebuild the request; botocore computes the
canonical request, the string to sign and the signature.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import Optional

from botocore.auth import SIGNED_HEADERS_BLACKLIST, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

MAX_SKEW = _dt.timedelta(minutes=5)

_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+"
    r"Credential=(?P<cred>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*"
    r"Signature=(?P<sig>[0-9a-f]{64})\s*$"
)


@dataclass
class SigCheck:
    """Outcome of verifying one request."""

    ok: bool
    # AWS error name when not ok (MissingAuthenticationTokenException, ...).
    error_type: Optional[str] = None
    message: str = ""
    access_key: Optional[str] = None
    scope: Optional[str] = None
    signed_headers: list = field(default_factory=list)
    canonical_request: Optional[str] = None
    string_to_sign: Optional[str] = None
    expected_signature: Optional[str] = None
    provided_signature: Optional[str] = None


def _fail(kind: str, message: str, **kw) -> SigCheck:
    return SigCheck(ok=False, error_type=kind, message=message, **kw)


def verify(
    method: str,
    raw_path: str,
    headers: dict,
    body: bytes,
    credentials: dict,
    region: str,
    service: str = "bedrock",
    now: Optional[_dt.datetime] = None,
) -> SigCheck:
    """Checks one request.

    `headers` maps lower-cased names to values; `credentials` maps access key id to
    (secret_access_key, session_token or None).
    """
    auth = headers.get("authorization")
    if not auth:
        return _fail("MissingAuthenticationTokenException", "Missing Authentication Token")
    m = _AUTH_RE.match(auth.strip())
    if not m:
        return _fail(
            "IncompleteSignatureException",
            f"Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters. Authorization={auth[:60]}...",
        )
    cred = m.group("cred").split("/")
    if len(cred) != 5 or cred[4] != "aws4_request":
        return _fail("IncompleteSignatureException", f"Credential is malformed: {m.group('cred')}")
    access_key, date, scope_region, scope_service, _ = cred
    signed = m.group("signed").split(";")
    provided = m.group("sig")
    common = dict(access_key=access_key, scope="/".join(cred[1:]), signed_headers=signed, provided_signature=provided)

    if access_key not in credentials:
        return _fail("UnrecognizedClientException", "The security token included in the request is invalid.", **common)
    secret, token = credentials[access_key]

    if scope_service != service:
        return _fail(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{service}'. ",
            **common,
        )
    if scope_region != region:
        return _fail(
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region. Expected '{region}', got '{scope_region}'.",
            **common,
        )
    amz_date = headers.get("x-amz-date")
    if not amz_date:
        return _fail("IncompleteSignatureException", "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.", **common)
    try:
        ts = _dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        return _fail("IncompleteSignatureException", f"Invalid X-Amz-Date: {amz_date}", **common)
    if ts.strftime("%Y%m%d") != date:
        return _fail("InvalidSignatureException", "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP", **common)
    now = now or _dt.datetime.now(_dt.timezone.utc)
    if abs(now - ts) > MAX_SKEW:
        return _fail(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than {(now - MAX_SKEW).strftime('%Y%m%dT%H%M%SZ')} "
            f"({now.strftime('%Y%m%dT%H%M%SZ')} - 5 min.)",
            **common,
        )
    if token is not None and headers.get("x-amz-security-token") != token:
        return _fail("UnrecognizedClientException", "The security token included in the request is invalid.", **common)
    if "host" not in signed:
        return _fail("InvalidSignatureException", "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.", **common)
    missing = [h for h in signed if h not in headers]
    if missing:
        return _fail("InvalidSignatureException", f"Signed header(s) not present in the request: {missing}", **common)
    unsignable = [h for h in signed if h in SIGNED_HEADERS_BLACKLIST]
    if unsignable:
        return _fail("InvalidSignatureException", f"Signed header(s) that SDKs never sign: {unsignable}", **common)
    body_hash = hashlib.sha256(body).hexdigest()
    sent_hash = headers.get("x-amz-content-sha256")
    if sent_hash is not None and sent_hash != body_hash:
        return _fail(
            "InvalidSignatureException",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
            **common,
        )

    # Rebuild the request with exactly the signed headers, the wire path and the body.
    req = AWSRequest(
        method=method,
        url=f"http://{headers['host']}{raw_path}",
        headers={h: headers[h] for h in signed},
        data=body,
    )
    req.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, secret, token), service, region)
    canonical = signer.canonical_request(req)
    botocore_signed = signer.signed_headers(signer.headers_to_sign(req))
    sts = signer.string_to_sign(req, canonical)
    expected = signer.signature(sts, req)
    common.update(canonical_request=canonical, string_to_sign=sts, expected_signature=expected)
    if botocore_signed != ";".join(signed):
        return _fail(
            "InvalidSignatureException",
            f"SignedHeaders {';'.join(signed)} are not in canonical order/form (expected {botocore_signed}).",
            **common,
        )
    if not hmac.compare_digest(expected, provided):
        return _fail(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\n"
            f"The Canonical String for this request should have been\n'{canonical}'\n\n"
            f"The String-to-Sign should have been\n'{sts}'\n",
            **common,
        )
    return SigCheck(ok=True, **common)
