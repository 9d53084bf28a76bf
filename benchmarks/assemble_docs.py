"""Assembles docs/benchmarks.md from the figures in benchmarks/results/*.md.

    python benchmarks/assemble_docs.py

Each benchmark writes its own figures (command, machine, numbers) into
benchmarks/results/<name>.md; this script puts them on one page under a
summary written in benchmarks/results/_summary.md.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = (
    ("range_test_throughput", "Range-test throughput (issue 2)"),
    ("suggestion_quality", "Suggestion quality (issue 2)"),
    ("schedule_throughput", "Schedule throughput (issue 6)"),
    ("one_cycle", "1cycle from a range test (issue 6)"),
    ("divergence_recovery", "Divergence recovery (issue 3)"),
    ("diagnosis_accuracy", "Diagnosis accuracy (issue 3)"),
    ("tuner_efficiency", "Tuner efficiency (issue 4)"),
)


def demote(text: str) -> str:
    """Pushes every Markdown heading one level down and drops a leading H1."""
    lines = text.strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join("#" + line if line.startswith("#") else line for line in lines)


def main() -> int:
    parts = [(HERE / "results" / "_summary.md").read_text().strip()]
    for name, title in ORDER:
        path = HERE / "results" / f"{name}.md"
        if path.exists():
            parts.append(f"## {title}\n\n{demote(path.read_text())}")
    out = HERE.parent / "docs" / "benchmarks.md"
    out.write_text("\n\n".join(parts) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
