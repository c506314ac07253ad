"""Prometheus metrics: the gateway's own (``inferstack_``) and the engines' scraped load."""
