"""dsrbody.semantics."""
