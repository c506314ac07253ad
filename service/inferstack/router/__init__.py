"""Route and retry: choose a replica for a request, attempt it, retry elsewhere before the first byte."""
