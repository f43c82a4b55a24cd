"""The benchmark figures of the README and docs/benchmarks.md are the benchmarks' own: each one is in
benchmarks/RESULTS.md."""

import re

import pytest

from tests.conftest import REPO_ROOT

# A figure: a number with its unit (seconds, megabytes, calls, reports, a speed-up); not the seconds of a
# duration in minutes ("8 min 4 s": the test suite's time, measured by hand, not a benchmark).
FIGURE = re.compile(r"(?<!min )(?<![\d.,])(\d[\d,]*(?:\.\d+)?) ?(s|MB|calls|reports|x)\b")


@pytest.mark.parametrize("page, least", [("docs/benchmarks.md", 10), ("README.md", 0)])
def test_every_benchmark_figure_in_the_docs_is_in_results_md(page, least):
    text = (REPO_ROOT / page).read_text("utf-8")
    results = (REPO_ROOT / "benchmarks" / "RESULTS.md").read_text("utf-8")
    figures = FIGURE.findall(text)
    assert len(figures) >= least, figures  # the page reports the benchmarks, not prose alone
    typed = [
        f"{number} {unit}"
        for number, unit in figures
        if not re.search(rf"(?<![\d.,]){re.escape(number)}(?![\d])", results)
    ]
    assert not typed, f"figures in {page} that benchmarks/RESULTS.md does not hold: {typed}"
