"""The matviews-dagster demo as a dg project."""
