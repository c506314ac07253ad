"""Scheduling plugins, one per module; each module names its class in ``PLUGIN`` (see ``scheduling``)."""
