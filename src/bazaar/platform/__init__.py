"""What every service stands on: settings, databases, events, cache, auth, the web edge."""
