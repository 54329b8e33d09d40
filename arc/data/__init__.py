"""Data: audio-text manifests, pre-encoded latent shards and the Lightning data module."""
