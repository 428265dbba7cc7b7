"""dsrbody.fit."""
