"""The demo: users, accounts, events and sessions, and four views over them."""

from pathlib import Path

DEMO_VIEWS = Path(__file__).with_name("matviews.yaml")
"""Path of the demo's view definitions."""
