"""Upstream replicas: discovery, health, outlier detection, load signals."""
