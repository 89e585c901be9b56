"""Prometheus exporter for Infobip voice-message logs."""

__version__ = "0.1.0"
