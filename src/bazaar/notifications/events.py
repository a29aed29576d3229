"""Events notifications publishes: none yet; it only reacts to the other services' events."""
