"""Backbone: schemas layer."""
