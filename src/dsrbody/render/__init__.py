"""dsrbody.render."""
