"""Upstream replicas: the cluster (discovery, health, outlier detection, load, the hold queue) and the client."""
