"""Which adapter a request names, read by the ingress before it picks a replica.

The same places the single-process routes read (README "HTTP API"): ``?adapter=`` and
``parameters.adapter_id`` on the native and TGI routes, ``model`` on the OpenAI routes. The name
only steers routing (Ray Serve's multiplexed model id): the replica's own routes still validate the
request, so a request the ingress cannot read is forwarded as it is and answered there (422, 404).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

NATIVE_PATHS = frozenset({"/", "/generate", "/generate_stream"})
OPENAI_PATHS = frozenset({"/v1/completions", "/v1/chat/completions"})


def adapter_of_request(method: str, path: str, query_string: bytes, body: bytes) -> str | None:
    """The adapter a generation request names (None: none, the base, or not a generation request)."""
    if method != "POST" or path not in NATIVE_PATHS | OPENAI_PATHS:
        return None
    if path in NATIVE_PATHS:
        names = parse_qs(query_string.decode("latin-1")).get("adapter")
        if names and names[0]:
            return names[0]
    try:
        payload = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict):
        return None
    if path in OPENAI_PATHS:
        name = payload.get("model")
    else:
        parameters = payload.get("parameters")
        name = parameters.get("adapter_id") if isinstance(parameters, dict) else None
    return name if isinstance(name, str) and name else None
