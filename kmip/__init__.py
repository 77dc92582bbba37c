"""The KMIP protocol layer."""
