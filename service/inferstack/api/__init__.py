"""The gateway's HTTP surface: the OpenAI endpoints (the hot path) and the other routes."""
