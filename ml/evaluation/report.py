"""The evaluation report: Markdown plus PNG figures (matplotlib Agg) rendered from the cached
step results of :mod:`ml.evaluation.evaluate`. A step not run yet or a descriptor not computed is listed
as such; rendering never needs the models or the data."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ml.evaluation.descriptors import OURS

REPORT = "report.md"
NOT_COMPUTED = "not computed"


def write_report(out: Path, dataset: str, model: str, results: dict) -> Path:
    """Render ``out/report.md`` (and figures beside it) from ``results`` (step name → its
    results, as :func:`ml.evaluation.evaluate.load_results` reads them back)."""
    out.mkdir(parents=True, exist_ok=True)
    descriptors = results.get("descriptors") or {}
    parts = [
        f"# Evaluation of the `{dataset}` map (model `{model}`)",
        "",
        (f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m ml evaluate --dataset {dataset}` "
        "(cached step results in `results/`; `--force` recomputes)."),
        "",
        *_descriptors_section(descriptors),
        *_retrieval_section(results.get("retrieval") or {}, out),
        *_neighbors_section(results.get("neighbors") or {}, descriptors),
        *_concepts_section(results.get("concepts") or {}, descriptors, out),
        *_probes_section(results.get("probes") or {}, descriptors),
        *_reading_section(results),
    ]
    path = out / REPORT
    path.write_text("\n".join(parts) + "\n")
    return path


def _name(descriptors: dict, name: str) -> str:
    return f"`{name}`" if name in descriptors or not name.startswith("no descriptor") else name


def _descriptors_section(descriptors: dict) -> list[str]:
    lines = ["## Descriptors", "",
             "| descriptor | what | materials covered | one core, s / structure | whole dataset on 2 cores |",
             "|---|---|---|---|---|"]
    for n, d in descriptors.items():
        cost = d.get("cost") or {}
        rate, hours = cost.get("seconds_per_structure"), cost.get("whole_dataset_hours")
        rate_text = f"{rate:.3f} ({cost.get('source', '')})" if rate is not None else "with the map"
        hours_text = f"≈ {hours:,.1f} h" if hours is not None else "–"
        lines.append(f"| `{n}` | {d['label']} | {d['coverage']} | {rate_text} | {hours_text} |")
    if not descriptors:
        lines.append(f"| – | {NOT_COMPUTED} | – | – | – |")
    partial = [n for n, d in descriptors.items() if d.get("available") and d.get("whole_dataset") is False]
    lines += ["", ("Neighbours are exact Euclidean nearest neighbours within the set a descriptor covers. "
              "Comparisons between descriptors use only the materials all compared descriptors cover "
              "(\"comparison set\" below).")]
    if partial:
        lines += ["", ("Not computed for the whole dataset here: " + ", ".join(f"`{n}`" for n in partial)
                       + " (cost above). The code runs on any set: `python -m ml descriptors --name NAME "
                       "--ids-from all --processes N` extends a cache without recomputing what it holds.")]
    lines.append("")
    return lines


def _retrieval_section(result: dict, out: Path) -> list[str]:
    lines = ["## 1. Cross-modal retrieval (XRD pattern → its crystal)", ""]
    if not result:
        return [*lines, f"Step `retrieval`: {NOT_COMPUTED}.", ""]
    topk = {int(k): v for k, v in result["topk"].items()}
    lines += [(f"Split `{result['split']}`, every one of the {result['n_candidates']:,} test materials is a query and "
              f"all {result['n_candidates']:,} test crystals are the candidates (chance top-1: "
              f"{100 / result['n_candidates']:.3f} %). Model `{result['model']}`."), "",
              "| k | " + " | ".join(str(k) for k in topk) + " |", "|---" * (len(topk) + 1) + "|",
              "| top-k (%) | " + " | ".join(f"{100 * v:.1f}" for v in topk.values()) + " |", "",
              "![retrieval](retrieval.png)", ""]
    _plot(out / "retrieval.png", lambda ax: (ax.plot(list(topk), [100 * v for v in topk.values()], marker="o"),
                                             ax.set_xlabel("k"), ax.set_ylabel("top-k accuracy (%)"), ax.set_ylim(0, 100)))
    return lines


def _neighbors_section(result: dict, descriptors: dict) -> list[str]:
    lines = ["## 2. Neighbours of the benchmark materials", ""]
    if not result:
        return [*lines, f"Step `neighbors`: {NOT_COMPUTED}.", ""]
    k = result["k"]
    fractions = pd.DataFrame(result["fractions"])
    queries = list(result["lists"])
    concept_queries = fractions[["query", "concept"]].drop_duplicates().values.tolist() if len(fractions) else []
    header = [f"{concept}s in top {k} of {query}" for query, concept in concept_queries]
    lines += [(f"Share of the top {k} neighbours that share the query's concept (cuprate: contains Cu and O; "
              "Li–transition-metal oxide: contains Li, O and a transition metal)."), "",
              "| descriptor | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    names = list(dict.fromkeys([*(fractions["descriptor"] if len(fractions) else []), *descriptors]))
    for name in names:
        cells = []
        for query, _concept in concept_queries:
            row = fractions[(fractions["query"] == query) & (fractions["descriptor"] == name)]
            if name in descriptors and not descriptors[name]["available"]:
                cells.append(NOT_COMPUTED)
            elif row.empty or row["fraction"].isna().all():
                cells.append("query not covered")
            else:
                cells.append(f"{100 * row['fraction'].iloc[0]:.0f} % ({int(row['k'].iloc[0])})")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines.append("")
    formula = result["formula_of"]
    for query in queries:
        by_name = result["lists"][query]
        names = list(by_name)
        lines += [f"### {formula.get(query, query)} ({query}): top {k}", "", "<details><summary>table</summary>", "",
                  "| rank | " + " | ".join(f"`{n}`" for n in names) + " |", "|---" * (len(names) + 1) + "|"]
        for rank in range(k):
            cells = []
            for n in names:
                ids = by_name[n]
                if isinstance(ids, str):
                    cells.append(ids if rank == 0 else "")
                else:
                    cells.append(f"{formula.get(ids[rank], '?')} {ids[rank]}" if rank < len(ids) else "")
            lines.append(f"| {rank + 1} | " + " | ".join(cells) + " |")
        missing = [n for n, info in descriptors.items() if not info["available"]]
        lines += ["", f"Not computed: {', '.join(missing)}." if missing else "", "</details>", ""]
    return lines


def _concepts_section(result: dict, descriptors: dict, out: Path) -> list[str]:
    lines = ["## 3. Concept classification with few labels: superconductor or not", ""]
    if not result:
        return [*lines, f"Step `concepts`: {NOT_COMPUTED}.", ""]
    lines += [("Positives: materials with a direct, undoped SuperCon match (3DSC) with Tc > 0 K; negatives: as many "
              "random materials without any SuperCon match. Random forest (100 trees) on balanced training sets "
              f"of n examples drawn from 70 % of the chemical systems; ROC-AUC on all pool materials of the other "
              f"30 % (sklearn GroupShuffleSplit by chemical system, so no system is on both sides); "
              f"{result['repeats']} repeats, the same splits and draws for every descriptor. Mean ± std over repeats."), ""]
    comparisons = [c for c in result["comparisons"] if "summary" in c]
    for c in result["comparisons"]:
        if "skipped" in c:
            lines += [f"**{c['set']}**: skipped ({c['skipped']}).", ""]
    for c in comparisons:
        summary = pd.DataFrame(c["summary"])
        sizes = sorted(summary["size"].unique())
        lines += [(f"**Comparison set: {c['set']}** — {c['n_pool']:,} labelled materials ({c['n_positive']:,} positive), "
                  f"{c['n_groups']:,} chemical systems."), "",
                  "| descriptor | " + " | ".join(f"n = {n}" for n in sizes) + " |", "|---" * (len(sizes) + 1) + "|"]
        for name, rows in summary.groupby("descriptor", sort=False):
            cells = [_mean_std(r) for _, r in rows.sort_values("size").iterrows()]
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
        absent = [n for n, info in descriptors.items() if not info["available"]]
        if absent:
            lines.append(f"| {', '.join(f'`{n}`' for n in absent)} | " + " | ".join(NOT_COMPUTED for _ in sizes) + " |")
        lines.append("")
    if comparisons:
        _plot_concepts(out / "concepts.png", comparisons)
        lines += ["![concept classification](concepts.png)", ""]
    return lines


def _mean_std(row) -> str:
    if row["repeats"] == 0 or row["mean"] is None or (isinstance(row["mean"], float) and math.isnan(row["mean"])):
        return "too few labels"
    return f"{row['mean']:.3f} ± {row['std']:.3f} ({int(row['repeats'])})"


def _probes_section(result: dict, descriptors: dict) -> list[str]:
    lines = ["## 4. Property probes", ""]
    if not result:
        return [*lines, f"Step `probes`: {NOT_COMPUTED}.", ""]
    lines += [(f"Random forest (100 trees, √d features per split) from each descriptor to the property, trained on "
              f"at most {result['train_cap']:,} random `train`-split materials with the property, scored on every "
              "`test`-split material with it (MAE in the property's unit, lower is better; accuracy, higher is "
              "better). The first column predicts the training mean / most frequent class."), ""]
    for c in result["comparisons"]:
        table = pd.DataFrame(c["rows"])
        if table.empty:
            continue
        names = list(dict.fromkeys(table["descriptor"]))
        lines += [f"**Comparison set: {c['set']}**", "",
                  "| property | metric | n train / test | " + " | ".join(_name(descriptors, n) for n in names) + " |",
                  "|---" * (len(names) + 3) + "|"]
        for target, rows in table.groupby("target", sort=False):
            first = rows.iloc[0]
            unit = f" ({first['unit']})" if isinstance(first["unit"], str) else ""
            scores = dict(zip(rows["descriptor"], rows["score"]))
            best = (min if first["metric"] == "MAE" else max)(
                (v for n, v in scores.items() if not n.startswith("no descriptor")), default=None)
            cells = [("**" if scores[n] == best else "") + _score(first["metric"], scores[n]) + ("**" if scores[n] == best else "")
                     for n in names]
            lines.append(f"| {target}{unit} | {first['metric']} | {first['n_train']:,} / {first['n_test']:,} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _score(metric: str, value: float) -> str:
    return f"{100 * value:.1f} %" if metric == "accuracy" else f"{value:.3f}"


def _reading_section(results: dict) -> list[str]:
    """Plain statements of who wins where, read off the numbers above."""
    lines = ["## Reading", ""]
    concepts = results.get("concepts") or {}
    for c in concepts.get("comparisons", []):
        if "summary" not in c:
            continue
        summary = pd.DataFrame(c["summary"]).dropna(subset=["mean"])
        for n in (10, 100):
            at = summary[summary["size"] == n].sort_values("mean", ascending=False)
            if len(at):
                ranking = ", ".join(f"`{r.descriptor}` {r.mean:.3f}" for r in at.itertuples())
                lines.append(f"- Superconductors, {c['set']}, n = {n}: {ranking}.{_standing(at)}")
    probes = results.get("probes") or {}
    for c in probes.get("comparisons", []):
        table = pd.DataFrame(c["rows"])
        if table.empty:
            continue
        table = table[~table["descriptor"].str.startswith("no descriptor")]
        wins = []
        for target, rows in table.groupby("target", sort=False):
            pick = rows.loc[rows["score"].idxmin() if rows["metric"].iloc[0] == "MAE" else rows["score"].idxmax()]
            wins.append(f"{target}: `{pick['descriptor']}`")
        lines.append(f"- Probes, {c['set']}, best per property: " + "; ".join(wins) + ".")
    neighbors = results.get("neighbors") or {}
    fractions = pd.DataFrame(neighbors.get("fractions", []))
    if len(fractions):
        for (query, concept), rows in fractions.dropna(subset=["fraction"]).groupby(["query", "concept"], sort=False):
            ranking = ", ".join(f"`{r.descriptor}` {100 * r.fraction:.0f} %" for r in rows.sort_values("fraction", ascending=False).itertuples())
            lines.append(f"- {concept}s among the top {neighbors['k']} of {query}: {ranking}.")
    if len(lines) == 2:
        lines.append(f"- {NOT_COMPUTED}: no step has results yet.")
    lines += ["", ("Caveats: our model is the CPU-scaled recipe (128-d, 10 epochs, 36k training materials), not the "
              "paper's; baselines computed on a sample or on mp2024-icsd are compared on that set only, where the "
              "labelled pool and the probe sets are much smaller (sizes given with every table). Those sets "
              "also hold the benchmark queries' top-50 CMML neighbours (`ml.descriptors.ids.benchmark_ids`, so that "
              "every baseline can be queried on them): `cmml within …` rows therefore repeat our own list, and a "
              "baseline's share of cuprates or Li–transition-metal oxides there can differ from its share on "
              "mp2024-icsd alone."), ""]
    return lines


def _standing(at: pd.DataFrame) -> str:
    """`` Ours is ahead of …; behind ….`` for one (set, size) of the concept summary (mean ROC-AUC;
    "level with" when the difference is under 0.005); empty when ours is not in it."""
    ours = at[at["descriptor"] == OURS]
    if ours.empty or len(at) < 2:
        return ""
    mine = float(ours["mean"].iloc[0])
    others = at[at["descriptor"] != OURS]
    groups = {"ahead of": others[others["mean"] < mine - 0.005], "level with": others[(others["mean"] - mine).abs() <= 0.005],
              "behind": others[others["mean"] > mine + 0.005]}
    parts = [f"{word} {', '.join(f'`{d}`' for d in rows['descriptor'])}" for word, rows in groups.items() if len(rows)]
    return f" Ours is {'; '.join(parts)}."


# --------------------------------------------------------------------------- figures


def _plot(path: Path, draw) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    draw(ax)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_concepts(path: Path, comparisons: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(comparisons), figsize=(4.2 * len(comparisons), 3.4), dpi=120, squeeze=False)
    for ax, c in zip(axes[0], comparisons):
        summary = pd.DataFrame(c["summary"]).dropna(subset=["mean"])
        for name, rows in summary.groupby("descriptor", sort=False):
            rows = rows.sort_values("size")
            ax.errorbar(rows["size"], rows["mean"], yerr=rows["std"], marker="o", capsize=3, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("labelled training examples")
        ax.set_ylabel("ROC-AUC (test chemical systems)")
        ax.set_title(c["set"][:48], fontsize=8)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_ylim(0.4, 1.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

