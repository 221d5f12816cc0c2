"""Harness around the woe_anchor extension: local server, install, demo data, demo fit."""
