"""airmic receiver."""
