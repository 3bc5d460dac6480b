"""Headers every answer but a ping's carries."""

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
}
"""No content sniffing, no referrer sent on, no framing by another page."""

API_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
"""The management API's answers are a project's private data: never cached."""
