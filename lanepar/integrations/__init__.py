"""Adapters that run agent frameworks' tool calls on lanes.

One module per framework; each imports its framework only when imported itself, so
``import lanepar`` never pulls a framework in.
"""
