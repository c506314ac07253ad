"""Talking to upstream replicas and relaying their answers to the client byte for byte."""
