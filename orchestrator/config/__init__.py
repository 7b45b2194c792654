"""Configuration and secrets: the one settings object (`settings.py`) with its typed per-component views
(`components.py`), and masking of secret values and URL credentials.

Imports nothing else of Cadre; every other room may import it.
"""
