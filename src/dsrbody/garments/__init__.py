"""dsrbody.garments."""
