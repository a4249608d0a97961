"""Crystal generation after Court et al. (2020): the VAE's voxel data set, voxel (de)coding, decoding
to crystals, the latent prior, the generative model, its modes (sampling), the funnel, generated-crystal
records, round trips."""
