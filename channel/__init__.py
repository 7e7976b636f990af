"""channel package."""
