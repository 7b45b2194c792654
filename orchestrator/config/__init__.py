"""Configuration and secrets: the one settings object, and masking of secret values and URL credentials.

Imports nothing else of Cadre; every other room may import it.
"""
