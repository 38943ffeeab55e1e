"""The papers' table layouts: which rows (named configs), which columns (metric results).

A column names the *result* it shows (`fid50k`, `ppl_wend`, `pr50k3_precision`, ...) and the
registered metric *protocol* that produces it (`fid50k`, `ppl_wend`, `pr50k3`, ...). Tables 3
and 4 of StyleGAN measure each row in its own latent space, so their result names are templates
with `{space}` filled from the row (`z` or `w`). Row and column labels are the papers' own, so a
pivot of the published baselines reproduces the table as printed.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ffhq_tools.errors import FfhqToolsError


@dataclass(frozen=True)
class Row:
    label: str
    config: str
    space: str = ""  # "z" or "w" for tables whose metrics depend on the latent space
    description: str = ""


@dataclass(frozen=True)
class Column:
    label: str
    result: str  # may contain "{space}"
    protocol: str | None  # registered metric that produces it; None: no registered protocol
    dataset: str
    decimals: int = 2

    def result_for(self, row: Row) -> str:
        return self.result.format(space=row.space)

    def protocol_for(self, row: Row) -> str | None:
        return self.protocol.format(space=row.space) if self.protocol else None


@dataclass(frozen=True)
class TableLayout:
    name: str
    paper: str
    title: str
    rows: tuple[Row, ...]
    columns: tuple[Column, ...]
    lower_is_better: tuple[str, ...] = ("fid", "kid", "ppl", "ls")

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.dataset for c in self.columns))

    def protocols(self, row: Row | None = None) -> list[str]:
        """Registered metric protocols this table needs (for one row, or for all rows)."""
        rows = [row] if row else self.rows
        found = [c.protocol_for(r) for r in rows for c in self.columns]
        return list(dict.fromkeys(p for p in found if p))

    def rows_for_config(self, config: str) -> list[Row]:
        return [r for r in self.rows if r.config == config]


def _ppl_ls_columns(dataset: str, with_fid: bool) -> tuple[Column, ...]:
    fid = (Column("FID", "fid50k", "fid50k", dataset),) if with_fid else ()
    return fid + (
        Column("PPL full", "ppl_{space}full", "ppl_{space}full", dataset, 1),
        Column("PPL end", "ppl_{space}end", "ppl_{space}end", dataset, 1),
        Column("separability", "ls_{space}", "ls", dataset, 2),
    )


_SG = "StyleGAN"
_SG2 = "StyleGAN2"

LAYOUTS: dict[str, TableLayout] = {t.name: t for t in [
    TableLayout(
        "stylegan-table1", _SG, "FID (50k images, lowest over training, no truncation)",
        rows=tuple(Row(k, f"stylegan-{k}", "", d) for k, d in [
            ("A", "Baseline Progressive GAN"), ("B", "+ Tuning (incl. bilinear up/down)"),
            ("C", "+ Add mapping and styles"), ("D", "+ Remove traditional input"),
            ("E", "+ Add noise inputs"), ("F", "+ Mixing regularization")]),
        columns=(Column("CelebA-HQ", "fid50k", "fid50k", "CelebA-HQ"),
                 Column("FFHQ", "fid50k", "fid50k", "FFHQ")),
    ),
    TableLayout(
        "stylegan-table2", _SG,
        "FID on FFHQ by mixing-regularization ratio and number of latents at test time",
        rows=(Row("E 0%", "mixing-0"), Row("50%", "mixing-50"), Row("F 90%", "mixing-90"),
              Row("100%", "mixing-100")),
        columns=tuple(Column(str(n), f"fid50k_latents{n}", f"fid50k_latents{n}", "FFHQ")
                      for n in range(1, 5)),
    ),
    TableLayout(
        "stylegan-table3", _SG, "Perceptual path length and separability (FFHQ)",
        rows=(Row("B Traditional generator Z", "stylegan-B", "z"),
              Row("D Style-based generator W", "stylegan-D", "w"),
              Row("E + Add noise inputs W", "stylegan-E", "w"),
              Row("+ Mixing 50% W", "mixing-50", "w"),
              Row("F + Mixing 90% W", "stylegan-F", "w")),
        columns=_ppl_ls_columns("FFHQ", with_fid=False),
    ),
    TableLayout(
        "stylegan-table4", _SG, "Effect of mapping-network depth (FFHQ)",
        rows=(Row("B Traditional 0 Z", "traditional-0", "z"),
              Row("Traditional 8 Z", "traditional-8", "z"),
              Row("Traditional 8 W", "traditional-8", "w"),
              Row("Style-based 0 Z", "style-based-0", "z"),
              Row("Style-based 1 W", "style-based-1", "w"),
              Row("Style-based 2 W", "style-based-2", "w"),
              Row("F Style-based 8 W", "style-based-8", "w")),
        columns=_ppl_ls_columns("FFHQ", with_fid=True),
    ),
    TableLayout(
        "stylegan2-table1", _SG2,
        "FID, PPL (W, endpoints), precision and recall; each averaged over 10 seeds",
        rows=tuple(Row(k, f"stylegan2-{k}", "", d) for k, d in [
            ("A", "Baseline StyleGAN"), ("B", "+ Weight demodulation"),
            ("C", "+ Lazy regularization"), ("D", "+ Path length regularization"),
            ("E", "+ No growing, new G & D arch."), ("F", "+ Large networks")]),
        # PPL as the NVlabs stylegan2 README reproduces Table 1: FFHQ with the face crop
        # (ppl_wend, 129.4 for config F), LSUN Car on the full image (ppl2_wend)
        columns=tuple(
            col for prefix, dataset, ppl in (("FFHQ", "FFHQ", "ppl_wend"),
                                             ("Car", "LSUN Car", "ppl2_wend")) for col in (
                Column(f"{prefix} FID", "fid50k", "fid50k", dataset),
                Column(f"{prefix} PPL", ppl, ppl, dataset, 1),
                Column(f"{prefix} P", "pr50k3_precision", "pr50k3", dataset, 3),
                Column(f"{prefix} R", "pr50k3_recall", "pr50k3", dataset, 3))),
    ),
    TableLayout(
        "reference-values", "reference code",
        "Values the public reference implementations report for the official FFHQ networks",
        rows=(Row("StyleGAN v1", "stylegan-F"), Row("StyleGAN2 config F", "stylegan2-F")),
        columns=(Column("FID", "fid50k", "fid50k", "FFHQ"),
                 Column("PPL zfull", "ppl_zfull", "ppl_zfull", "FFHQ", 1),
                 Column("PPL wfull", "ppl_wfull", "ppl_wfull", "FFHQ", 1),
                 Column("PPL zend", "ppl_zend", "ppl_zend", "FFHQ", 1),
                 Column("PPL wend", "ppl_wend", "ppl_wend", "FFHQ", 1),
                 Column("PPL2 wend", "ppl2_wend", "ppl2_wend", "FFHQ", 1),
                 Column("LS z", "ls_z", "ls", "FFHQ"),
                 Column("LS w", "ls_w", "ls", "FFHQ"),
                 Column("P", "pr50k3_precision", "pr50k3", "FFHQ", 3),
                 Column("R", "pr50k3_recall", "pr50k3", "FFHQ", 3)),
    ),
    TableLayout(
        "wgan-gp-inception-score", "WGAN-GP", "Inception score, CIFAR-10, unsupervised",
        rows=tuple(Row(name, "") for name in (
            "ALI", "BEGAN", "DCGAN", "Improved GAN (-L+HA)", "EGAN-Ent-VI", "DFM",
            "WGAN-GP ResNet")),
        columns=(Column("IS", "is50k_mean", "is50k", "CIFAR-10"),
                 Column("+-", "is50k_std", "is50k", "CIFAR-10")),
        lower_is_better=(),
    ),
]}


def get_layout(name: str) -> TableLayout:
    if name not in LAYOUTS:
        close = difflib.get_close_matches(name, LAYOUTS, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise FfhqToolsError(f"unknown table '{name}'.{hint} Known tables: "
                             f"{', '.join(LAYOUTS)}")
    return LAYOUTS[name]
