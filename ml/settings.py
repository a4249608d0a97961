"""Settings shared by the CLI and the app, read from ``MATMAP_*`` environment variables.

| variable | meaning | default |
|---|---|---|
| ``MATMAP_MIRROR_DIR`` | folder of the local data mirror (``mp2024_structures.jsonl.gz`` …) | ``../shared/datasets`` beside the repository |
| ``MATMAP_DATA_DIR`` | caches and built artifacts | ``data/`` in the repository |
| ``MATMAP_MP_API_KEY`` | Materials Project API key, used only when the mirror is missing (``MP_API_KEY`` is read too) | unset |
| ``MATMAP_DATASET`` | dataset the app serves | ``mp2024`` |
| ``MATMAP_MODEL`` | model whose map the app serves (and ``python -m ml build`` builds) | ``cmml-full`` |
| ``MATMAP_GENERATOR_MODEL`` | crystal generator of ``/generate`` and ``python -m ml generate`` (a folder of ``data/models``) | ``vae-cpu`` |
| ``MATMAP_MAX_UPLOAD_MB`` | largest CIF upload the app accepts, MB | ``5`` |
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = "cmml-full"
"""The map model (a folder of ``data/models``) used when none is named: the full-data campaign's
(issue 14; ``cmml-cpu`` was the default before)."""
DEFAULT_GENERATOR_MODEL = "vae-cpu"
"""The crystal generator used when none is named."""


class Settings(BaseSettings):
    """matmap settings; every field can be set as ``MATMAP_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="MATMAP_", extra="ignore")

    mirror_dir: Path = Field(default=REPO_ROOT.parent / "shared" / "datasets")
    data_dir: Path = Field(default=REPO_ROOT / "data")
    mp_api_key: str | None = None
    dataset: str = "mp2024"
    model: str = DEFAULT_MODEL
    generator_model: str = DEFAULT_GENERATOR_MODEL
    max_upload_mb: float = 5.0

    def api_key(self) -> str | None:
        """The Materials Project API key from ``MATMAP_MP_API_KEY`` or ``MP_API_KEY``."""
        return self.mp_api_key or os.environ.get("MP_API_KEY") or None

    @property
    def cache_dir(self) -> Path:
        """Feature caches, keyed by a hash of the featuriser configuration."""
        return self.data_dir / "cache"

    @property
    def artifacts_dir(self) -> Path:
        """Built maps: ``artifacts/<dataset>/<model>/``."""
        return self.data_dir / "artifacts"

    @property
    def models_dir(self) -> Path:
        """Trained checkpoints with model cards: ``models/<model>/model.pt``."""
        return self.data_dir / "models"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()
