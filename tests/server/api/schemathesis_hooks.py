"""schemathesis hooks (tests/server/api/schemathesis.toml): what the schema cannot say."""

from __future__ import annotations

import schemathesis


@schemathesis.hook
def filter_case(context, case) -> bool:
    """A request naming its adapter twice (``?adapter=`` and ``parameters.adapter_id``) must name the
    same one (else 422); JSON Schema cannot relate a query parameter to the body."""
    query = (case.query or {}).get("adapter")
    body = case.body if isinstance(case.body, dict) else {}
    parameters = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
    in_body = parameters.get("adapter_id")
    return query is None or in_body is None or query == in_body
