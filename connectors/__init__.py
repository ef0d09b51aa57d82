"""Backbone: connectors layer."""
