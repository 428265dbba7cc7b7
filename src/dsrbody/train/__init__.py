"""dsrbody.train."""
