"""A tiny trained crystal generator for the latent explorer's tests, made by the real pipeline.

The VAE set of the fixture map's materials (:func:`fixture_map.fixture_dataset`: about 40
cubic AB compounds among its 300) is selected from the mirror's CIFs
(:func:`ml.vae_data.select_vae_materials`), voxelised on a 16³ grid
(:func:`ml.vae_data.build_voxel_arrays`) and a small UNet and Cond-DFC-VAE are trained on it
for a few epochs (:func:`ml.vae_train.train_unet`, :func:`ml.vae_train.train_vae`): about 10 s of
one CPU core. The pair decodes structures (rarely valid ones: it is barely trained), which is
what the page's tests need; the files are the real checkpoint format, loaded by
:meth:`ml.generate.Generator.load`.
"""

from __future__ import annotations

import os
from pathlib import Path

from fixture_map import fixture_dataset

GRID = 16
MODEL_DIR = "vae-cpu"


def tiny_train_config():
    """A 16³ UNet + VAE (latent size 8) trained for 3 epochs each."""
    from ml.models.unet3d import UNet3DConfig
    from ml.models.vae3d import VAE3DConfig
    from ml.vae_train import VAETrainConfig

    return VAETrainConfig(
        name="test", unet=UNet3DConfig(n_species=119, base_channels=4, depth=2, convs_per_level=1, grid=GRID),
        vae=VAE3DConfig(latent_dim=8, channels=(4, 4, 8, 8), grid=GRID), unet_lr=1e-2, unet_batch_size=4,
        unet_epochs=3, vae_lr=3e-3, vae_batch_size=4, vae_epochs=3)


def build_fixture_generator(data_dir: Path):
    """Select, voxelise and train under ``data_dir`` (caches, ``models/vae-cpu``).

    Returns:
        The dataset the voxel store belongs to (pass it to ``ml.explorer.use_source``).
    """
    import torch

    from ml.settings import get_settings
    from ml.vae_data import build_voxel_arrays, load_voxel_arrays
    from ml.vae_train import train_unet, train_vae
    from ml.voxels import VoxelConfig

    previous = os.environ.get("MATMAP_DATA_DIR")
    os.environ["MATMAP_DATA_DIR"] = str(data_dir)
    get_settings.cache_clear()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; the tiny models gain nothing from more
    try:
        dataset = fixture_dataset()
        voxels = VoxelConfig(grid_size=GRID)
        build_voxel_arrays(dataset, voxel_config=voxels, progress=False)
        arrays = load_voxel_arrays(dataset, voxel_config=voxels)
        config = tiny_train_config()
        out, run = Path(data_dir) / "models" / MODEL_DIR, Path(data_dir) / "runs" / "vae-fixture"
        command = ["python", "-m", "ml", "train-vae", "(test fixture)"]
        train_unet(dataset, config, run, out, command=command, arrays=arrays)
        train_vae(dataset, config, run, out, command=command, arrays=arrays)
        return dataset
    finally:
        torch.set_num_threads(threads)
        if previous is None:
            os.environ.pop("MATMAP_DATA_DIR", None)
        else:
            os.environ["MATMAP_DATA_DIR"] = previous
        get_settings.cache_clear()
