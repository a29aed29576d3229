"""How processes are put together: settings, the platform's adapters, the embedded app."""
