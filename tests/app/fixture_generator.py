"""A tiny trained crystal generator for the latent explorer's tests, made by the real pipeline.

The VAE set of the fixture map's materials (:func:`fixture_map.fixture_dataset`: about 40
cubic AB compounds among its 300) is selected from the mirror's CIFs
(:func:`ml.generation.voxel_data.select_vae_materials`), voxelised on a 16³ grid
(:func:`ml.generation.voxel_arrays.build_voxel_arrays`) and a small conditional VAE is trained on it for a few
epochs (:func:`ml.training.vae.train_vae`): about 15 s of one CPU core. It decodes structures (few
valid ones: it is barely trained), which is what the page's tests need; the file is the real
checkpoint format, loaded by :meth:`ml.generation.generative_model.GenerativeModel.load`.
"""

from __future__ import annotations

import os
from pathlib import Path

from fixture_map import fixture_dataset

GRID = 16
MODEL_DIR = "vae-cpu"


def tiny_train_config():
    """A 16³ VAE (latent size 8) trained for 10 epochs of batches of 2 (180 steps).

    Fewer steps leave the decoded density below the decoder's 0.5 peak threshold everywhere, so
    nothing decodes: 4 epochs of batches of 4 (the first setting of this design) peaked at 0.43
    and decoded none of the 41 crystals. This one peaks near 0.6 and decodes most reconstructions
    and samples, a few of them valid.
    """
    from ml.models.vae3d import VAE3DConfig
    from ml.training.vae import VAETrainConfig

    vae = VAE3DConfig(n_species=1, species_embedding=8, latent_dim=8, channels=(8, 8, 16, 16), grid=GRID)
    return VAETrainConfig(name="test", vae=vae, lr=1e-2, batch_size=2, epochs=10)


def build_fixture_generator(data_dir: Path):
    """Select, voxelise and train under ``data_dir`` (caches, ``models/vae-cpu``).

    Returns:
        The dataset the voxel store belongs to (pass it to ``ml.service.explorer.use_source``).
    """
    from ml.settings import get_settings
    from ml.threads import torch_threads
    from ml.generation.voxel_arrays import build_voxel_arrays, load_voxel_arrays
    from ml.generation.generative_model import fit_latent_prior
    from ml.training.vae import train_vae
    from ml.generation.voxels import VoxelConfig

    previous = os.environ.get("MATMAP_DATA_DIR")
    os.environ["MATMAP_DATA_DIR"] = str(data_dir)
    get_settings.cache_clear()
    try:
        with torch_threads(1):  # the machine is shared; the tiny models gain nothing from more
            dataset = fixture_dataset()
            voxels = VoxelConfig(grid_size=GRID)
            build_voxel_arrays(dataset, voxel_config=voxels, progress=False)
            arrays = load_voxel_arrays(dataset, voxel_config=voxels)
            config = tiny_train_config()
            out, run = Path(data_dir) / "models" / MODEL_DIR, Path(data_dir) / "runs" / "vae-fixture"
            command = ["python", "-m", "ml", "train-vae", "(test fixture)"]
            train_vae(dataset, config, run, out, command=command, arrays=arrays, progress=False)
            fit_latent_prior(out, dataset, n_components=2)
            return dataset
    finally:
        if previous is None:
            os.environ.pop("MATMAP_DATA_DIR", None)
        else:
            os.environ["MATMAP_DATA_DIR"] = previous
        get_settings.cache_clear()
