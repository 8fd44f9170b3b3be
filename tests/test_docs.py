"""The documents an instructor hands out: the glossary and the instructor's guide."""

from __future__ import annotations

import re

import nbformat
import pytest

from tests.helpers import ROOT

GLOSSARY = ROOT / "docs" / "glossary.md"
INSTRUCTOR = ROOT / "docs" / "INSTRUCTOR.md"
LESSONS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LINK = re.compile(r"\]\((\.\./[^)#\s]+)")


def lesson_text(path) -> str:
    notebook = nbformat.read(path, as_version=4)
    return "\n".join(cell.source for cell in notebook.cells).lower()


def glossary_rows() -> list[tuple[str, str, str]]:
    rows = []
    for line in GLOSSARY.read_text(encoding="utf-8").splitlines():
        if line.startswith("| ") and "](../" in line:
            english, chinese, lesson = (cell.strip() for cell in line.strip().strip("|").split("|"))
            rows.append((english, chinese, LINK.search(lesson).group(1)))
    return rows


def test_glossary_has_the_core_terms_in_both_languages():
    rows = glossary_rows()
    assert len(rows) >= 50
    chinese = " ".join(row[1] for row in rows)
    for term in (
        "生成式人工智能",
        "变分自编码器",
        "生成对抗网络",
        "自注意力",
        "KL散度",
        "证据下界",
    ):
        assert term in chinese, term
    for english, zh, _ in rows:
        assert re.search(r"[\u4e00-\u9fff]", zh) or zh.startswith("top-"), (english, zh)
    english_terms = [row[0].lower() for row in rows]
    assert len(english_terms) == len(set(english_terms)), "a term is listed twice"


@pytest.mark.parametrize(
    "english, chinese, link", glossary_rows(), ids=[row[0] for row in glossary_rows()]
)
def test_each_glossary_term_is_taught_in_the_lesson_it_links_to(english, chinese, link):
    target = (GLOSSARY.parent / link).resolve()
    assert target.is_file(), f"{english}: {link} does not exist"
    text = lesson_text(target)
    # "forward KL / reverse KL", "query, key, value", "evidence lower bound (ELBO)": each part.
    for part in re.split(r"\s*/\s*|,\s*", re.sub(r"\s*\(.*?\)", "", english)):
        assert part.lower() in text, f"{part!r} does not appear in {target.name}"


def test_every_lesson_has_glossary_terms():
    linked = {(GLOSSARY.parent / link).resolve() for _, _, link in glossary_rows()}
    assert {path.resolve() for path in LESSONS} <= linked


def measured_cpu_times() -> dict[str, str]:
    table = (ROOT / "docs" / "time-table-cpu.md").read_text(encoding="utf-8")
    return dict(re.findall(r"\| `(notebooks/[^`]+)` \| cpu \| [^|]+ \| ([^|]+?) \|", table))


def test_the_time_table_covers_every_lesson_and_readme_shows_it():
    times = measured_cpu_times()
    assert sorted(times) == sorted(path.relative_to(ROOT).as_posix() for path in LESSONS)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- time-table:cpu:begin -->")[1].split("<!-- time-table:cpu:end -->")[0]
    table = (ROOT / "docs" / "time-table-cpu.md").read_text(encoding="utf-8")
    assert block.strip() and block.strip() in table
    assert "aigc-course time-notebooks --profile cpu" in block
    for profile in ("cpu", "gpu"):  # where `time-notebooks --profile P` writes its table
        assert readme.count(f"<!-- time-table:{profile}:begin -->") == 1


def test_the_instructor_guide_quotes_the_measured_times_for_every_lesson():
    guide = INSTRUCTOR.read_text(encoding="utf-8")
    rows = re.findall(r"^\| \[\d\d [^\]]+\]\(\.\./(notebooks/[^)]+)\) \|([^\n]+)$", guide, re.M)
    quoted = {path: cells.split("|")[2].strip() for path, cells in rows}
    assert quoted == measured_cpu_times()
    for link in LINK.findall(guide):
        assert (INSTRUCTOR.parent / link).resolve().exists(), link
    for problem in ("No GPU", "MPS", "Triton", "Old PyTorch", "Colab"):
        assert problem in guide
    for schedule in ("Half a day", "One day", "Two days"):
        assert f"### {schedule}" in guide


def test_the_gpu_check_script_is_ready():
    """benchmarks/gpu_check.sh parses, refuses to run outside the repository, and names files that exist."""
    import subprocess

    script = ROOT / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    outside = subprocess.run(["bash", str(script), "out"], cwd="/", capture_output=True, text=True)
    assert outside.returncode == 2 and "run this from the repository root" in outside.stderr
    text = script.read_text(encoding="utf-8")
    for name in re.findall(r"run_benchmark (\w+\.py)", text):
        assert (ROOT / "benchmarks" / name).is_file(), name
    assert (ROOT / "tests" / "test_gpu.py").is_file() and "tests/test_gpu.py" in text
    assert ".gpu-wheels/" in (ROOT / ".gitignore").read_text(encoding="utf-8")


def vae_rate_rows() -> list[tuple[float, str, str, float]]:
    """``(minutes, learning rate, decay, test -ELBO)`` of RESULTS.md's "The MLP VAE's learning rate
    by the clock" table."""
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    section = text.split("## The MLP VAE's learning rate by the clock", 1)[1].split("\n## ", 1)[0]
    row = re.compile(r"^\| (\d+) \| ([^|]+) \| ([^|]+) \| [^|]+ \| \**([\d.]+)\** \|$", re.M)
    return [
        (float(m), lr.strip(), decay.strip(), float(elbo))
        for m, lr, decay, elbo in row.findall(section)
    ]


def test_the_vae_rate_gains_quoted_in_lesson_06_and_the_readme_are_the_results_tables():
    """The budget's rate (5e-3, cosine) against the baseline (1e-3, constant): the lesson's claims
    cell holds the table's 1-minute runs, and the gains it and README quote (3.4, 2.8 and 1.0
    nats at 1, 3 and 10 minutes) are the table's means, rounded."""
    rows = vae_rate_rows()

    def runs(minutes: float, lr: str, decay: str) -> tuple[float, ...]:
        return tuple(e for m, r, d, e in rows if m == minutes and r == lr and d.startswith(decay))

    gains = {}
    for minutes in (1, 3, 10):
        baseline, decayed = (
            runs(minutes, "1e-3", "constant (the baseline)"),
            runs(minutes, "5e-3", "cosine"),
        )
        assert baseline and decayed, minutes
        gains[minutes] = round(sum(baseline) / len(baseline) - sum(decayed) / len(decayed), 1)
    assert gains == {1: 3.4, 3: 2.8, 10: 1.0}
    claims = next(
        cell.source
        for cell in nbformat.read(ROOT / "notebooks" / "06_vae.ipynb", as_version=4).cells
        if cell.get("id") == "vae-budget-claims"
    )
    assert (
        f"constant_rate, decayed_rate = {runs(1, '1e-3', 'constant (the baseline)')}, {runs(1, '5e-3', 'cosine')}"
        in claims
    )
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert (
        "3.4 nats ahead of PyTorch's example recipe (the same network at a constant 1e-3) at 1 minute, 2.8 at 3, 1.0 at 10"
        in readme
    )
