"""Flotilla: container clusters on demand, speaking OpenStack Magnum's v1 API."""

__version__ = "0.1.0"
