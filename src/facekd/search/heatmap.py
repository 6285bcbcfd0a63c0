"""PNG of the architecture weights: one heat map per cell type, edges x primitives.

Each row is an edge (``n2<-in0``: into node 2 from cell input 0), each column a
primitive, the colour and the number its softmax weight; the operations the derived
genotype keeps are framed.
"""
import numpy as np

from ..atomic import atomic_path
from .space import PRIMITIVES, edge_label, edges


def _panel(ax, weights, nodes, kept, title):
    from matplotlib.patches import Rectangle

    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=max(float(weights.max()), 1e-6), aspect="auto")
    ax.set_xticks(range(len(PRIMITIVES)))
    ax.set_xticklabels(PRIMITIVES, rotation=45, ha="right", fontsize=8)
    rows = edges(nodes)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([edge_label(j, i) for j, i in rows], fontsize=8)
    for r in range(weights.shape[0]):
        for c in range(weights.shape[1]):
            ax.text(c, r, f"{weights[r, c]:.3f}", ha="center", va="center", fontsize=6,
                    color="white" if weights[r, c] < 0.6 * weights.max() else "black")
    for r, c in kept:
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_title(title, fontsize=10)
    return image


def _kept_cells(genotype_cell, nodes):
    """(row, column) of the operations a derived cell keeps."""
    rows = {edge: r for r, edge in enumerate(edges(nodes))}
    return [(rows[(j, source)], PRIMITIVES.index(op)) for j, node in enumerate(genotype_cell) for op, source in node]


def write_heatmap(path, weights, genotype, nodes, title):
    """Write the PNG of ``weights`` ({"normal", "reduce"}: softmax matrices) under a temporary name."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_edges = len(edges(nodes))
    fig = Figure(figsize=(13, 1.6 + 0.32 * n_edges))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, kind in zip(axes, ("normal", "reduce")):
        matrix = np.asarray(weights[kind], dtype=np.float64)
        image = _panel(ax, matrix, nodes, _kept_cells(genotype.cell(kind == "reduce")[0], nodes),
                       f"{kind} cell: softmax of alpha_{kind}")
        fig.colorbar(image, ax=ax, fraction=0.04)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path
