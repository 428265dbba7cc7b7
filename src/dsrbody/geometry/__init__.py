"""dsrbody.geometry."""
