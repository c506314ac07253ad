"""Relaying an upstream's answer to the client: SSE event by event, or a whole body."""
