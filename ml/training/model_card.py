"""Model cards: what made a committed model and how good it is, written next to its weights."""

from __future__ import annotations

import platform
import shlex
import sys
from pathlib import Path


def write_model_card(model_path: Path, payload: dict, command: list[str] | None = None) -> Path:
    """Write ``MODEL_CARD.md`` and ``curve.png`` (validation retrieval against epochs) beside
    ``model_path``.

    Args:
        model_path: the saved model file.
        payload: what :func:`ml.training.cmml.train` stored with the model (``train_config``,
            ``history``, ``test_retrieval``, ``dataset``, ``n_train``, ``n_test``).
        command: the command line (default ``sys.argv``).
    """
    folder = model_path.parent
    history = payload.get("history", [])
    config = payload.get("train_config", {})
    test = payload.get("test_retrieval", {})
    wall_seconds = sum(h["seconds"] for h in history)
    command = command or ["python", "-m", "ml", *sys.argv[1:]]
    _plot_curve(history, folder / "curve.png")
    lines = [
        f"# Model card: {folder.name}",
        "",
        "Cross-modal metric-learning encoders (CMML; Suzuki et al., Mach. Learn.: Sci. Technol. 3, 045034, 2022):",
        "a CGCNN crystal-graph encoder and an XRD 1D-CNN encoder trained with the bidirectional triplet loss",
        "(margin 1) so that the two views of one material are close. No labels are used.",
        "",
        "## How it was made",
        f"- command: `{shlex.join(command)}`",
        f"- data: `{payload.get('dataset')}` (Materials Project mirror, 2–5-element materials; see ../../README.md)",
        f"- split: SHA-256 hash of `material_id` (90 / 5 / 5); training materials: {payload.get('n_train')}",
        (f"- configuration `{config.get('name')}`: batch {config.get('batch_size')}, Adam lr {config.get('lr')}, "
        f"{config.get('epochs')} epochs, train shards {config.get('train_shards')}, "
        f"embedding {config.get('model', {}).get('crystal', {}).get('embedding_dim')}-d"),
        (f"- epochs run: {len(history)}; training wall time (epochs and validation, resumes included, "
        f"featurisation excluded) {wall_seconds / 3600:.2f} h on {platform.machine()} "
        f"({platform.processor() or 'CPU'}), Python {platform.python_version()}"),
        "",
        "## Test retrieval (XRD query → crystal, whole test split as candidates)",
        f"- candidates: {payload.get('n_test')} test materials",
        "- " + ", ".join(f"top-{k}: {100 * v:.1f} %" for k, v in sorted(test.items(), key=lambda kv: int(kv[0]))),
        "",
        "## Validation curve",
        "",
        "![validation retrieval against epochs](curve.png)",
        "",
        "| epoch | loss | val top-1 | val top-10 | seconds |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {h['epoch']} | {h['loss']:.4f} | {100 * h['val_top1']:.1f} % | {100 * h['val_top10']:.1f} % | {h['seconds']:.0f} |"
        for h in history
    ]
    lines += ["", "Validation: the validation-split materials of the training shards, all as candidates.", ""]
    path = folder / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path


def _plot_curve(history: list[dict], path: Path) -> None:
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(epochs, [100 * h["val_top1"] for h in history], marker="o", label="top-1")
    ax.plot(epochs, [100 * h["val_top10"] for h in history], marker="o", label="top-10")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation retrieval (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_property_model_card(model_path: Path, payload: dict, command: list[str] | None = None) -> Path:
    """Write ``MODEL_CARD.md`` beside a CGCNN property model (:mod:`ml.training.property`).

    Args:
        model_path: the saved model file.
        payload: what :func:`ml.training.property.train_property_model` stored with the model
            (``train_config``, ``history``, ``test_mae``, ``n_train``, ``n_val``, ``n_test``, ``dataset``).
        command: the command line (default ``sys.argv``).
    """
    folder = model_path.parent
    history = payload.get("history", [])
    config = payload.get("train_config", {})
    model = config.get("model", {})
    unit = model.get("unit", "")
    command = command or ["python", "-m", "ml", *sys.argv[1:]]
    lines = [
        f"# Model card: {folder.name}",
        "",
        f"CGCNN property regressor for `{model.get('target')}` ({unit}), after the predictors of Court et al.",
        "(J. Chem. Inf. Model. 60, 4518, 2020): one graph convolution, mean pooling over atoms, dense layers",
        "(see `ml/models/property_regressor.py`). Its mean-pooled vector is the concept baseline of Suzuki et al. (2022).",
        "",
        "## How it was made",
        f"- command: `{shlex.join(command)}`",
        (f"- data: `{payload.get('dataset')}` (Materials Project mirror, 2–5-element materials), `train` split materials "
        f"with the property in the first {config.get('train_shards')} graph shards: {payload.get('n_train')} "
        f"(validation: {payload.get('n_val')} `val` materials of the same shards)"),
        (f"- model: hidden {model.get('hidden')}, {model.get('n_conv')} convolution(s), dense {model.get('dense_hidden')}; "
        f"L1 loss on the normalised target (mean / std of the training targets, shipped in the checkpoint)"),
        (f"- training: batch {config.get('batch_size')}, Adam lr {config.get('lr')} with cosine decay, "
        f"{config.get('epochs')} epochs, seed {config.get('seed')}"),
        (f"- wall time: {sum(h['seconds'] for h in history) / 60:.1f} min for the epochs (validation included) on one "
        f"niced core of {platform.machine()} shared with other jobs, Python {platform.python_version()}"),
        "",
        "## Test (whole `test` split of the dataset with the property)",
        f"- MAE: **{payload.get('test_mae', float('nan')):.3f} {unit}** on {payload.get('n_test')} materials",
        "",
        "## Validation per epoch",
        "",
        f"| epoch | train L1 (normalised) | val MAE ({unit}) | seconds |",
        "|---|---|---|---|",
    ]
    lines += [f"| {h['epoch']} | {h['loss']:.4f} | {h['val_mae']:.4f} | {h['seconds']:.0f} |" for h in history]
    lines.append("")
    path = folder / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path
