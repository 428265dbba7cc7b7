"""dsrbody.models."""
