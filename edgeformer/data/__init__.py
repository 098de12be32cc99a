"""Preprocessing and sample sources: images, audio (wav, log-mel), npy."""
