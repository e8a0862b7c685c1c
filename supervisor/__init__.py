"""Entrypoint wrapper that makes Kubernetes Jobs with sidecars finish."""

__version__ = "0.1.0"
