"""Devices and placement: registry, capability, affinity, partition."""
