"""Contract tests: the API against its own OpenAPI document."""
