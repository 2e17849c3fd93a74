"""The Dagster-free core: definitions, SQL, services, run store and operations."""
