"""dsrbody.eval."""
