"""dsrbody.data."""
