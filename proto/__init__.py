"""Replication protocol."""
