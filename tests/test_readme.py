"""The README's figures are the benchmarks' own: each one is in benchmarks/RESULTS.md."""

import re

from tests.conftest import REPO_ROOT

# A figure: a number with its unit (seconds, megabytes, calls, reports, a speed-up).
FIGURE = re.compile(r"(\d[\d,]*(?:\.\d+)?) ?(s|MB|calls|reports|x)\b")


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def test_every_benchmark_figure_in_the_readme_is_in_results_md():
    readme = section((REPO_ROOT / "README.md").read_text("utf-8"), "Benchmarks")
    results = (REPO_ROOT / "benchmarks" / "RESULTS.md").read_text("utf-8")
    figures = FIGURE.findall(readme)
    assert len(figures) >= 10, figures  # the section reports the benchmarks, not prose alone
    typed = [
        f"{number} {unit}"
        for number, unit in figures
        if not re.search(rf"(?<![\d.,]){re.escape(number)}(?![\d])", results)
    ]
    assert not typed, f"figures in the README's Benchmarks section that benchmarks/RESULTS.md does not hold: {typed}"
