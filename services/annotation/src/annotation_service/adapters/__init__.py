"""Outbound clients of the annotation service."""
