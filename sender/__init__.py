"""airmic sender."""
