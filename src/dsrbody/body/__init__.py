"""dsrbody.body."""
