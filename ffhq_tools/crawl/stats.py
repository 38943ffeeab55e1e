"""`--stats`: file counts and sizes by category, license and country (like FFHQ's `-s`)."""

from __future__ import annotations

from collections import Counter

from ffhq_tools.crawl.manifest import FileSpec

STAT_FIELDS = ("category", "license", "country")


def stats_rows(specs: list[FileSpec], field: str) -> list[tuple[str, int, int]]:
    """(value, files, bytes) per distinct value, most files first; unknown sizes count 0."""
    files: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for spec in specs:
        key = getattr(spec, field) or "(none)"
        files[key] += 1
        sizes[key] += spec.file_size or 0
    return sorted(((k, files[k], sizes[k]) for k in files), key=lambda row: (-row[1], row[0]))


def human_bytes(num_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if num_bytes < 1000 or unit == "TB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.2f} {unit}"
        num_bytes /= 1000
    raise AssertionError("unreachable")


def format_stats(specs: list[FileSpec], top: int = 20) -> str:
    """Plain-text tables, one per field; rows beyond `top` are summed into '(other)'."""
    total_files = max(len(specs), 1)
    total_bytes = max(sum(s.file_size or 0 for s in specs), 1)
    blocks = []
    for field in STAT_FIELDS:
        rows = stats_rows(specs, field)
        if len(rows) > top:
            rest = rows[top:]
            rows = rows[:top] + [("(other)", sum(r[1] for r in rest), sum(r[2] for r in rest))]
        width = max([len(field)] + [len(r[0]) for r in rows])
        lines = [f"{field.capitalize():<{width}}  {'Files':>8}  {'%':>6}  {'Size':>10}  {'%':>6}",
                 "-" * (width + 38)]
        for value, count, size in rows:
            lines.append(f"{value:<{width}}  {count:>8}  {100 * count / total_files:>6.2f}  "
                         f"{human_bytes(size):>10}  {100 * size / total_bytes:>6.2f}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
