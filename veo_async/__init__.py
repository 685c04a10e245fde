"""veo-async."""
