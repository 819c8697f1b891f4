"""airmic common."""
