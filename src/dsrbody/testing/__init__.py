"""dsrbody.testing."""
