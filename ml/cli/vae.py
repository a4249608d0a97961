"""The crystal-generator verbs of ``python -m ml`` (registered by :mod:`ml.cli.main`):

    python -m ml train-vae --config cpu [--resume] [--max-minutes M]
    python -m ml evaluate-vae [--model vae-cpu] [--n-random 1000] [--n-targeted 1000]
    python -m ml generate interpolate --from mp-… --to mp-… --steps 10 --out DIR
    python -m ml generate sample --around mp-… --variance 0.5 --n 1000 --out DIR
    python -m ml generate sample --decile 3 --n 1000 --out DIR

Errors a user can fix raise ``ValueError`` / ``FileNotFoundError`` (one ``error:`` line, exit 2
in :func:`ml.cli.main.main`).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

VAE_VERBS = ("train-vae", "evaluate-vae", "generate")


def add_vae_verbs(verbs) -> None:
    """Add the generator's sub-parsers to ``python -m ml``'s sub-parser collection."""
    p = verbs.add_parser("train-vae", help="train the voxel crystal generator (conditional VAE with species channels)")
    p.add_argument("--config", choices=["cpu", "paper"], default="cpu")
    p.add_argument("--dataset", default="mp2024")
    p.add_argument("--run-dir", type=Path, default=None, help="checkpoint and log (default data/runs/vae-<config>)")
    p.add_argument("--out", type=Path, default=None, help="model folder (default data/models/vae-<config>)")
    p.add_argument("--resume", action="store_true",
                   help="continue from run-dir/last.pt, else from the model folder's train_state.pt (a committed campaign)")
    p.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after the epoch that passes this time")
    p.add_argument("--max-train", type=int, default=None, help="override: number of training crystals")

    p = verbs.add_parser("evaluate-vae", help="score the generator on the validation split against the paper")
    p.add_argument("--dataset", default="mp2024")
    p.add_argument("--model", default=None, help="model folder or name in data/models (default vae-cpu)")
    p.add_argument("--n-random", type=int, default=1000, help="random samples per prior (default 1000)")
    p.add_argument("--n-targeted", type=int, default=1000, help="targeted samples in all (default 1000)")
    p.add_argument("--n-bases", type=int, default=10, help="validation materials to sample around (default 10)")
    p.add_argument("--n-pairs", type=int, default=50, help="interpolation pairs within a family (default 50)")
    p.add_argument("--no-control", action="store_true", help="skip the untrained-model negative control")
    p.add_argument("--max-val", type=int, default=None, help="score at most this many validation crystals")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="report folder (default data/reports/vae/<model>)")

    p = verbs.add_parser("generate", help="generate crystals with the trained voxel VAE (CIFs + CSV)")
    modes = p.add_subparsers(dest="mode", required=True)
    for name, text in (("interpolate", "decode the line between two materials' latent vectors"),
                       ("sample", "sample around a material (--around) or at random with a decile (--decile)")):
        q = modes.add_parser(name, help=text)
        q.add_argument("--dataset", default="mp2024")
        q.add_argument("--model", default=None, help="model folder or name in data/models (default vae-cpu)")
        q.add_argument("--out", type=Path, required=True, help="folder for the CIFs and generated.csv")
        q.add_argument("--seed", type=int, default=0)
        if name == "interpolate":
            q.add_argument("--from", dest="id_from", required=True, metavar="MATERIAL_ID")
            q.add_argument("--to", dest="id_to", required=True, metavar="MATERIAL_ID")
            q.add_argument("--steps", type=int, default=10, help="points on the line, ends included (default 10)")
        else:
            q.add_argument("--around", default=None, metavar="MATERIAL_ID", help="base material (targeted sampling)")
            q.add_argument("--variance", type=float, default=0.5, help="latent variance around the base (default 0.5)")
            q.add_argument("--decile", type=int, default=None,
                           help="formation-energy decile 0–9 (required without --around; default: the base's)")
            q.add_argument("--n", type=int, default=1000, help="number of samples (default 1000)")
            q.add_argument("--prior", choices=["fitted", "normal"], default=None,
                           help="with --decile: latent vectors from the mixture fitted to the training crystals "
                                "(default when the model has one) or from N(0, I)")


def run_vae_verb(args: argparse.Namespace) -> int:
    """Run one of :data:`VAE_VERBS`; returns the exit status."""
    command = ["python", "-m", "ml", *sys.argv[1:]]
    if args.verb == "train-vae":
        from dataclasses import replace

        from ml.data.datasets import get_dataset
        from ml.settings import get_settings
        from ml.generation.generative_model import fit_latent_prior
        from ml.generation.vae_set import write_vae_set_of
        from ml.generation.voxel_arrays import build_voxel_arrays, publish_voxel_store
        from ml.training.loop import pick_device
        from ml.training.campaign import TRAIN_STATE_FILE
        from ml.training.vae import VAE_TRAIN_CONFIGS, train_vae

        config = VAE_TRAIN_CONFIGS[args.config]
        overrides = {"epochs": args.epochs, "max_minutes": args.max_minutes, "max_train": args.max_train}
        config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
        settings = get_settings()
        run_dir = args.run_dir or settings.data_dir / "runs" / f"vae-{args.config}"
        out = args.out or settings.models_dir / f"vae-{args.config}"
        dataset, device = get_dataset(args.dataset), pick_device()
        store = build_voxel_arrays(dataset, voxel_config=config.voxel_config)
        # what the app reads: the set (ml.service.explorer) and the store (GenerativeModel.load by name)
        write_vae_set_of(dataset)
        publish_voxel_store(store, dataset.name, config.voxel_config)
        resume = args.resume and ((run_dir / "last.pt").is_file() or (out / TRAIN_STATE_FILE).is_file())
        result = train_vae(dataset, config, run_dir, out, resume=resume, device=device, command=command)
        fit_latent_prior(out, dataset)
        val = result["val"]
        print(f"VAE: {len(result['history'])} epochs; validation species accuracy "
              f"{100 * val['species_voxel_accuracy']:.1f} % of atom voxels, cell-length MAE "
              f"{val['cell_length_mae']:.3f} Å; written to {out / 'vae.pt'}"
              + ("" if result["finished"] else " (stopped at --max-minutes: --resume continues)"))
    elif args.verb == "evaluate-vae":
        from ml.evaluation.generator import evaluate_vae

        report = evaluate_vae(args.dataset, args.model, args.n_random, args.n_targeted, args.n_bases,
                              args.max_val, args.seed, args.out, n_pairs=args.n_pairs,
                              negative_control=not args.no_control)
        print(report["markdown"])
    elif args.verb == "generate":
        _generate(args, command)
    return 0


def _generate(args: argparse.Namespace, command: list[str]) -> None:
    from tqdm.auto import tqdm

    from ml.generation.funnel import funnel_counts
    from ml.generation.generative_model import GenerativeModel
    from ml.generation.records import GenerationError, write_generated

    if args.mode == "sample" and args.around is None and args.decile is None:
        raise GenerationError("generate sample needs --around MATERIAL_ID or --decile 0–9")
    generator = GenerativeModel.load(args.model, args.dataset)
    bar = tqdm(desc="decoding", unit="crystal")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    if args.mode == "interpolate":
        crystals = generator.interpolate(args.id_from, args.id_to, args.steps, progress=progress)
    elif args.around is not None:
        crystals = generator.sample_around(args.around, args.variance, args.n, args.decile, args.seed, progress)
    else:
        crystals = generator.sample(args.decile, args.n, args.seed, progress, prior=args.prior)
    bar.close()
    path = write_generated(crystals, args.out)
    (Path(args.out) / "command.txt").write_text(shlex.join(command) + "\n")
    counts = funnel_counts(crystals, energy_checked="formation_energy_per_atom" in generator.predictors)
    shown = ", ".join(f"{k} {v}" for k, v in counts.items() if v is not None and (args.mode == "sample" and args.around
                                                                                  or k in ("generated", "valid")))
    print(f"{shown}; written to {path}")
