"""``python -m ml <verb>``: featurise, train, build maps, query neighbours, locate CIFs.

Every verb has ``--help``. Errors the user can fix (unknown id, unreadable file, missing map)
print one line ``error: …`` and exit with status 2; ``locate`` places every file it can and
prints one ``error: <file>: …`` line per file it cannot (status 2 when any failed).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ml.settings import DEFAULT_MODEL

EXIT_USER_ERROR = 2
log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    """Every verb's arguments, one function per group of verbs."""
    parser = argparse.ArgumentParser(prog="python -m ml", description="matmap: maps of materials space")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    verbs = parser.add_subparsers(dest="verb", required=True)
    from ml.cli.vae import add_vae_verbs  # train-vae, evaluate-vae, generate

    for add_verbs in (_add_map_verbs, _add_query_verbs, _add_training_verbs, _add_evaluation_verbs, _add_vae_data_verb,
                      add_vae_verbs):
        add_verbs(verbs)
    return parser


def _add_map_verbs(verbs) -> None:
    """``build`` and ``featurize``: the map and the features it is built from."""
    p = verbs.add_parser("build", help="build (or update) the map of a dataset")
    p.add_argument("--dataset", default="mp2024", help="mp2024 (default), mp2024-icsd, or a CIF folder / zip / file")
    p.add_argument("--model", default=None, help=f"model name in data/models/ or a .pt path (default: {DEFAULT_MODEL})")
    p.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity (default 30)")
    p.add_argument("--seed", type=int, default=0, help="t-SNE random seed")
    p.add_argument("--processes", type=int, default=None, help="featurisation processes (default: all cores)")
    p.add_argument("--force", action="store_true", help="rebuild even if the map is up to date")
    p.add_argument("--views", default="crystal,xrd", metavar="crystal[,xrd]",
                   help="the maps to build (default both); a crystal-only map gets the XRD map added in place by a "
                        "later build that asks for it")

    p = verbs.add_parser("finish-build", help="add what ./run.sh leaves to the background: the XRD map and the "
                                              "latent explorer's voxel store (the app says they are being built)")
    p.add_argument("--dataset", default="mp2024")
    p.add_argument("--model", default=None, help=f"the map's model (default: {DEFAULT_MODEL})")
    p.add_argument("--processes", type=int, default=None, help="featurisation processes (default: all cores)")
    p.add_argument("--log", default=None, help="the file this build's output goes to, which the app names")

    p = verbs.add_parser("featurize", help="compute cached features of a dataset")
    p.add_argument("--dataset", default="mp2024")
    p.add_argument("--kind", choices=["graph", "xrd"], default="graph")
    p.add_argument("--processes", type=int, default=None)
    p.add_argument("--shards", default=None, metavar="START:STOP", help="only these feature shards (default: all)")
    p.add_argument("--xrd-engine", choices=["fast", "pymatgen"], default="fast",
                   help="XRD simulator: ours (default) or pymatgen's XRDCalculator (same patterns, ~30x slower)")


def _add_query_verbs(verbs) -> None:
    """``neighbors`` and ``locate``: questions to a built map."""
    p = verbs.add_parser("neighbors", help="nearest materials of a material as CSV")
    p.add_argument("--dataset", default="mp2024")
    p.add_argument("--model", default=None)
    p.add_argument("--material-id", required=True)
    p.add_argument("--k", type=int, default=50, help="number of neighbours, 1 to 1000")
    p.add_argument("--out", default="-", help="CSV file, or - for standard output (default); headers carry the "
                                              "units, values are rounded to 4 decimals")

    p = verbs.add_parser("locate", help="place CIF files on a built map (disordered ones by their majority "
                                        "occupants); one error line per file that cannot be placed")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE.cif")
    p.add_argument("--dataset", default="mp2024")
    p.add_argument("--model", default=None)
    p.add_argument("--k", type=int, default=10, help="neighbours listed per file")


def _add_training_verbs(verbs) -> None:
    """``train`` (the CMML encoders) and ``train-property`` (a CGCNN property predictor)."""
    p = verbs.add_parser("train", help="train the CMML encoders")
    p.add_argument("--config", choices=["cpu", "full", "paper"], default="cpu",
                   help="cpu: 36k materials, ~45 min; full: all of mp2024, a campaign across sessions; paper: GPUs")
    p.add_argument("--dataset", default="mp2024")
    p.add_argument("--run-dir", type=Path, default=None, help="checkpoints and log (default data/runs/<config>)")
    p.add_argument("--out", type=Path, default=None, help="final model file (default data/models/cmml-<config>/model.pt)")
    p.add_argument("--resume", action="store_true",
                   help="continue from run-dir/last.pt, else from the model folder's train_state.pt (a committed campaign)")
    p.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    p.add_argument("--batch-size", type=int, default=None, help="override the config's batch size")
    p.add_argument("--train-shards", type=int, default=None, help="override: train on the first N feature shards")
    p.add_argument("--max-minutes", type=float, default=None, help="stop at the first checkpoint after this time")
    p.add_argument("--checkpoint-minutes", type=float, default=None, help="checkpoint inside epochs this often")
    p.add_argument("--processes", type=int, default=None, help="featurisation processes")

    p = verbs.add_parser("train-property", help="train a CGCNN property predictor (formation energy, band gap)")
    p.add_argument("--target", required=True, help="property column: formation_energy_per_atom or band_gap")
    p.add_argument("--dataset", default="mp2024")
    p.add_argument("--run-dir", type=Path, default=None, help="checkpoints (default data/runs/<model name>)")
    p.add_argument("--out", type=Path, default=None, help="model file (default data/models/<model name>/model.pt)")
    p.add_argument("--resume", action="store_true", help="continue from run-dir/last.pt")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--batch-size", type=int, default=None, help="override the recipe's batch size")
    p.add_argument("--train-shards", type=int, default=None, help="override: train on the first N graph shards")


def _add_evaluation_verbs(verbs) -> None:
    """``evaluate`` (the report) and ``descriptors`` (the baselines it compares against)."""
    p = verbs.add_parser("evaluate", help="evaluation report of a map against baseline descriptors")
    p.add_argument("--dataset", default="mp2024")
    p.add_argument("--model", default=None, help=f"the map's model (default: {DEFAULT_MODEL})")
    p.add_argument("--out", type=Path, default=None, help="report folder (default data/reports/<dataset>)")
    p.add_argument("--steps", default=None,
                   help="comma-separated subset of: retrieval,neighbors,concepts,probes (default: all)")
    p.add_argument("--force", action="store_true", help="recompute the steps even when their results are cached")

    p = verbs.add_parser("descriptors", help="compute baseline descriptors (Ewald, sine Coulomb, CrystalNN, CHGNet)")
    p.add_argument("--dataset", default="mp2024")
    p.add_argument("--name", default=None,
                   help="ewald, sine_coulomb, crystalnn, chgnet or cmml (with --export alone: every computed one)")
    p.add_argument("--ids-from", choices=["all", "icsd", "sample", "concepts", "benchmark"], default=None,
                   help="all materials; mp2024-icsd plus the benchmark queries and their top-50 CMML neighbours; "
                        "the seeded sample; the concept sample (--sample-size / 2 superconductors and as many "
                        "unmatched materials, plus the benchmark); or the benchmark queries and neighbours alone "
                        "(default: the descriptor's coverage in ml.descriptors.registry.DESCRIPTORS)")
    p.add_argument("--sample-size", type=int, default=1000, help="random mp2024-icsd materials in the sample")
    p.add_argument("--seed", type=int, default=0, help="sample seed")
    p.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--export", action="store_true",
                   help="write the app's copy (data/artifacts/<dataset>/descriptors/<name>/); alone: export only")


def _add_vae_data_verb(verbs) -> None:
    """``vae-data``: the generator's crystals and their voxel store."""
    p = verbs.add_parser("vae-data", help="select the VAE's cubic crystals, voxelise them, and report the voxel round trip")
    p.add_argument("--dataset", default="mp2024")
    p.add_argument("--roundtrip", action="store_true",
                   help="also voxelise and decode every selected crystal without a network and report site errors")
    p.add_argument("--limit", type=int, default=None, help="round trip of N crystals drawn at random (seed 0) only")
    p.add_argument("--no-density", action="store_true", help="decode from the species grid alone (no density)")
    p.add_argument("--out", type=Path, default=None, help="per-crystal round-trip CSV")


def _model_name(model: str | None) -> str | None:
    """The artifact folder name of a ``--model`` value (a name, or a .pt path)."""
    if model is None:
        return None
    from ml.models.registry import resolve_model

    return resolve_model(model)[0]


def _build(args: argparse.Namespace) -> int:
    """``python -m ml build``: build (or update) the map of a dataset."""
    from ml.mapping.build import build_map

    views = [v.strip() for v in args.views.split(",") if v.strip()]
    folder = build_map(args.dataset, args.model, args.perplexity, args.seed, args.processes, args.force, views=views)
    print(f"map ready: {folder}")
    return 0


def _finish_build(args: argparse.Namespace) -> int:
    """``python -m ml finish-build``: the XRD map of the dataset's map (built first with ``build --views
    crystal``) and the latent explorer's voxel store (of mp2024, what ``/generate`` reads), announced
    to the app (:mod:`ml.build_status`); nothing when both are there or another build runs. Resumes
    where an interrupted one stopped (cached feature shards and voxel parts)."""
    from ml.build_status import VOXEL_STORE, XRD_MAP, BuildRunning, announce
    from ml.data.datasets import get_dataset
    from ml.generation.voxel_arrays import voxel_store_published
    from ml.mapping.build import build_map, built_views
    from ml.mapping.format import MANIFEST, artifact_dir
    from ml.service.explorer import VAE_DATASET
    from ml.settings import get_settings

    dataset = get_dataset(args.dataset)
    folder = artifact_dir(dataset.name, _model_name(args.model) or get_settings().model)
    pending = [XRD_MAP] if not (folder / MANIFEST).is_file() or "xrd" not in built_views(folder) else []
    if not voxel_store_published(VAE_DATASET):  # /generate's generator reads mp2024's, whatever map is served
        pending.append(VOXEL_STORE)
    if not pending:
        print("the XRD map and the voxel store are built")
        return 0
    try:
        with announce(dataset.name, pending, args.log) as build:
            if XRD_MAP in pending:
                build.stage("XRD map: patterns, XRD embedding, t-SNE")
                build_map(dataset, args.model, processes=args.processes)
                build.done(XRD_MAP)
            if VOXEL_STORE in pending:
                build.stage("voxel store: select the cubic crystals, voxelise them")
                print(build_vae_data(get_dataset(VAE_DATASET)))
                build.done(VOXEL_STORE)
    except BuildRunning as running:
        print(f"nothing to do here: {running}")
    return 0


def build_vae_data(dataset) -> str:
    """Select the VAE's crystals, build their voxel arrays, write what the app reads (the set,
    ``data/artifacts/<dataset>/vae_set.parquet``, and the published voxel store,
    ``data/artifacts/<dataset>/vae_store/``); returns a summary for the terminal."""
    from ml.generation.vae_set import write_vae_set
    from ml.generation.voxel_arrays import build_voxel_arrays, publish_voxel_store
    from ml.generation.voxel_data import select_vae_materials

    table = select_vae_materials(dataset)
    counts = table.groupby("family")["split"].value_counts().unstack(fill_value=0).assign(total=lambda t: t.sum(axis=1))
    published = publish_voxel_store(build_voxel_arrays(dataset), dataset.name)
    return (f"{counts}\n{len(table)} crystals; voxel arrays (the app's copy): {published}; the app's copy of the set: "
            f"{write_vae_set(table, dataset.name)}")


def _featurize(args: argparse.Namespace) -> int:
    """``python -m ml featurize``: compute cached features of a dataset."""
    from ml.data.datasets import get_dataset
    from ml.data.featurize import featurize, load_features
    from ml.data.shard_cache import n_shards_for

    dataset = get_dataset(args.dataset)
    shards = None
    if args.shards:
        start, _, stop = args.shards.partition(":")
        shards = range(int(start or 0), int(stop) if stop else 10**9)
    folder = featurize(dataset, args.kind, shards=shards, processes=args.processes, xrd_engine=args.xrd_engine)
    table = load_features(dataset, args.kind, shards=None if shards is None else
                          [s for s in shards if s < n_shards_for(len(dataset))])
    print(f"{len(table)} materials featurised, {len(table.failures)} failed; cache: {folder}")
    return 0


def _train(args: argparse.Namespace) -> int:
    """``python -m ml train``: train the CMML encoders (a config, overrides, resume)."""
    from dataclasses import replace

    from ml.data.datasets import get_dataset
    from ml.settings import get_settings
    from ml.training.cmml import train
    from ml.training.cmml_recipes import TRAIN_CONFIGS

    config = TRAIN_CONFIGS[args.config]
    overrides = {k: v for k, v in {"epochs": args.epochs, "batch_size": args.batch_size,
                                   "train_shards": args.train_shards, "max_minutes": args.max_minutes,
                                   "checkpoint_minutes": args.checkpoint_minutes}.items() if v is not None}
    config = replace(config, **overrides)
    settings = get_settings()
    run_dir = args.run_dir or settings.data_dir / "runs" / args.config
    out = args.out or settings.models_dir / f"cmml-{args.config}" / "model.pt"
    result = train(get_dataset(args.dataset), config, run_dir, resume=args.resume, out_model=out,
                   processes=args.processes)
    if "test" in result:
        print("test retrieval: " + ", ".join(f"top-{k} {v:.3f}" for k, v in result["test"].items()))
        print(f"model written to {out}")
    elif not result.get("finished", True):
        print(f"stopped at a checkpoint after {len(result['history'])} of {config.epochs} epochs; "
              f"continue with: python -m ml train --config {args.config} --resume")
    return 0


def _train_property(args: argparse.Namespace) -> int:
    """``python -m ml train-property``: train a CGCNN property predictor."""
    from ml.data.datasets import get_dataset
    from ml.training.property import configured, model_name_for, train_property_model
    from ml.settings import get_settings
    from ml.training.loop import pick_device

    name = model_name_for(args.target)
    config = configured(name, epochs=args.epochs, batch_size=args.batch_size, train_shards=args.train_shards)
    settings = get_settings()
    out = args.out or settings.models_dir / name / "model.pt"
    result = train_property_model(get_dataset(args.dataset), name, config,
                                  args.run_dir or settings.data_dir / "runs" / name, out,
                                  resume=args.resume, device=pick_device())
    print(f"test MAE {result['test_mae']:.4f} {config.model.unit} on {result['n_test']} materials; "
          f"model written to {out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    """``python -m ml evaluate``: write the evaluation report."""
    from ml.evaluation.evaluate import evaluate

    steps = None if args.steps is None else [s.strip() for s in args.steps.split(",") if s.strip()]
    report = evaluate(args.dataset, args.model, args.out, steps, force=args.force)
    print(f"report written to {report}")
    return 0


def _neighbors(args: argparse.Namespace) -> int:
    """``python -m ml neighbors``: the neighbour table of a material as CSV."""
    from ml.mapping.artifacts import MapArtifacts
    from ml.mapping.tables import table_csv

    # load() maps a CIF path to its map name itself; doing it here too gave "user-user-…"
    artifacts = MapArtifacts.load(args.dataset, _model_name(args.model))
    table = artifacts.neighbors(args.material_id, args.k)
    if args.out == "-":
        sys.stdout.write(table_csv(table))
    else:
        Path(args.out).write_text(table_csv(table), encoding="utf-8")
        print(f"{len(table)} neighbours of {args.material_id} written to {args.out}", file=sys.stderr)
    return 0


def _descriptors(args: argparse.Namespace) -> int:
    """``python -m ml descriptors``: compute and export baseline descriptors."""
    from ml.descriptors.export import run_descriptors

    for line in run_descriptors(args.dataset, args.name, args.ids_from, args.sample_size, args.seed,
                                args.processes, args.export):
        print(line)
    return 0


def _vae_data(args: argparse.Namespace) -> int:
    """``python -m ml vae-data``: select the VAE's crystals, build their voxel arrays, write what the app
    reads (the set, ``data/artifacts/<dataset>/vae_set.parquet``, and the published voxel store,
    ``data/artifacts/<dataset>/vae_store/``), optionally round-trip them."""
    import pandas as pd

    from ml.data.datasets import get_dataset

    dataset = get_dataset(args.dataset)
    print(build_vae_data(dataset))
    if args.roundtrip:
        from ml.generation.roundtrip import roundtrip_report, summarise_roundtrip

        report = roundtrip_report(dataset, use_density=not args.no_density, limit=args.limit)
        with pd.option_context("display.width", 200, "display.max_columns", 12):
            print(summarise_roundtrip(report).round(4))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            report.to_csv(args.out, index=False)
            print(f"per-crystal round trip: {args.out}")
    return 0


def _run(args: argparse.Namespace) -> int:
    """Run the verb of ``args``: its function in :data:`_VERBS`, else a generator verb (:mod:`ml.cli.vae`)."""
    if args.verb in _VERBS:
        return _VERBS[args.verb](args)
    from ml.cli.vae import run_vae_verb  # train-vae, evaluate-vae, generate

    return run_vae_verb(args)


def _locate(args: argparse.Namespace) -> int:
    """``python -m ml locate``: place every file that can be placed; one ``error: <file>: …``
    line per file that cannot; status 2 when some file failed, else 0.

    Every file is read and checked (:func:`ml.mapping.locate.prepare_cif`) before the map is opened and
    torch or the model are loaded, so a run of bad files is refused without them."""
    from ml.mapping.locate import locate_prepared, prepare_cif

    prepared, failed = [], 0
    for path in args.files:
        try:
            prepared.append((path, prepare_cif(path.read_text(errors="replace"))))
        except OSError as exc:
            failed += _file_error(path, f"cannot read the file ({exc.strerror or exc})")
        except ValueError as exc:  # CifError, FeaturisationError: the message is for the user
            failed += _file_error(path, str(exc))
        except Exception as exc:  # a bug must not hide the other files' results behind a traceback
            log.debug("reading %s failed", path, exc_info=True)
            failed += _file_error(path, f"could not be read ({type(exc).__name__}: {exc}); -v shows the traceback")
    if prepared:
        import pandas as pd

        from ml.mapping.artifacts import MapArtifacts

        # load() maps a CIF path to its map name itself; doing it here too gave "user-user-…"
        artifacts = MapArtifacts.load(args.dataset, _model_name(args.model))
        located = locate_prepared([p for _, p in prepared], artifacts, k=args.k)
        with pd.option_context("display.width", 200, "display.max_columns", 8):
            for (path, _), result in zip(prepared, located):
                print(f"{path}: {result.formula} at map (x={result.x:.2f}, y={result.y:.2f})")
                for note in result.notes:
                    print(f"note: {note}")
                print(result.neighbors[["rank", "material_id", "formula", "distance"]].to_string(index=False))
                print()
    if failed:
        print(f"{failed} of {len(args.files)} file{'s' if len(args.files) != 1 else ''} could not be placed",
              file=sys.stderr)
    return EXIT_USER_ERROR if failed else 0


def _file_error(path: Path, message: str) -> int:
    """Print one ``error: <path>: <message>`` line; returns 1 (one more failed file)."""
    print(f"error: {path}: {message}", file=sys.stderr)
    return 1


#: The map verbs and their functions (the generator verbs: :func:`ml.cli.vae.run_vae_verb`).
_VERBS = {
    "build": _build,
    "finish-build": _finish_build,
    "featurize": _featurize,
    "train": _train,
    "train-property": _train_property,
    "evaluate": _evaluate,
    "neighbors": _neighbors,
    "descriptors": _descriptors,
    "locate": _locate,
    "vae-data": _vae_data,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    from ml.mapping.format import ArtifactError, UnknownMaterialError
    from ml.data.datasets import DatasetError

    try:
        return _run(args)
    except (ArtifactError, UnknownMaterialError, DatasetError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
