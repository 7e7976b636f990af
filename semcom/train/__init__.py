"""Training entry points (`semcom train TARGET`)."""
