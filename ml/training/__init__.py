"""Model training: the CMML contrastive trainer, losses, campaigns across sessions, property and VAE trainers, model cards."""
