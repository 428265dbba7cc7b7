"""dsrbody.losses."""
