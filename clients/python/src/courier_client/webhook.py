"""Checking that a webhook delivery came from Courier.

Every delivery is signed twice with the webhook's secret (`whsec_` + base64;
the key is the base64-DECODED part after `whsec_`):

* Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256 of
  "{webhook-id}.{webhook-timestamp}.{body}">`, possibly several space-separated
  (during a secret rotation both the new and the old secret sign);
* `X-Webhook-Signature: sha256=<hex HMAC-SHA256 of the body>`, signed with the
  current secret only.
"""

import base64
import hashlib
import hmac
import json
import time


class InvalidSignature(Exception):
    """The delivery is not signed with this secret, or is too old."""


def _key(secret):
    return base64.b64decode(secret.removeprefix("whsec_"))


def verify_webhook(secret, headers, body, tolerance=300):
    """Checks a delivery's Standard Webhooks signature and that its timestamp is
    within `tolerance` seconds of now; returns the parsed body, or raises
    InvalidSignature. `headers` is any mapping (names are matched without case);
    `body` the raw bytes, exactly as received."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, timestamp, signatures = lower["webhook-id"], lower["webhook-timestamp"], lower["webhook-signature"]
        sent = int(timestamp)
    except (KeyError, ValueError):
        raise InvalidSignature("missing or malformed webhook-id / webhook-timestamp / webhook-signature") from None
    if abs(time.time() - sent) > tolerance:
        raise InvalidSignature(f"timestamp {sent} is more than {tolerance}s away from now")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()
    for signature in signatures.split(" "):
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return json.loads(body)
    raise InvalidSignature("no signature matches this secret")


def verify_seed_signature(secret, body, header):
    """Checks `X-Webhook-Signature: sha256=<hex>`; True if it matches."""
    expected = "sha256=" + hmac.new(_key(secret), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header or "")
