"""Backbone: agents layer."""
