"""The suite's fixtures live in one pytest plugin, tests/plugin.py."""

pytest_plugins = ["tests.plugin"]
