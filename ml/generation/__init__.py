"""Crystal generation: the VAE's voxel data set, voxel (de)coding, decoding to crystals, the latent prior, the generator, round trips."""
