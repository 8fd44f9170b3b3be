"""``aigc-course time-notebooks``: timing notebooks in fresh kernels and the README time table."""

from __future__ import annotations

from datetime import date

import nbformat
import pytest

from aigc_course import cli, timing
from aigc_course.notebook_tools import notebook_text


def write_notebook(path, *sources: str) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(notebook_text(notebook), encoding="utf-8")


@pytest.fixture
def course(tmp_path, monkeypatch):
    """A minimal course repository with two notebooks and a README with cpu-table markers."""
    (tmp_path / "solutions").mkdir()
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    begin, end = timing.markers("cpu")
    (tmp_path / "README.md").write_text(f"# Course\n\n{begin}\nold\n{end}\n\n## After\n")
    write_notebook(
        tmp_path / "notebooks" / "01_memory.ipynb",
        "import os, time\nassert os.environ['AIGC_PROFILE'] == 'cpu', os.environ['AIGC_PROFILE']",
        "block = bytearray(300 * 2**20)\ntime.sleep(0.5)",
    )
    write_notebook(tmp_path / "notebooks" / "02_quick.ipynb", "print('hello')")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_durations_and_sizes_read_naturally():
    assert timing.format_duration(7.4) == "7 s"
    assert timing.format_duration(178) == "2 min 58 s"
    assert timing.format_duration(3725) == "1 h 02 min"
    assert timing.format_bytes(812 * 2**20) == "812 MiB"
    assert timing.format_bytes(int(1.44 * 2**30)) == "1.4 GiB"
    assert timing.format_bytes(None) == "n/a"


def test_time_notebook_measures_time_and_memory_without_changing_the_file(course):
    path = course / "notebooks" / "01_memory.ipynb"
    before = path.read_bytes()
    row = timing.time_notebook(path, "cpu", timeout=120)
    assert path.read_bytes() == before
    assert row.profile == "cpu" and row.notebook == "01_memory.ipynb"
    assert row.seconds >= 0.5
    assert row.peak_rss_bytes >= 300 * 2**20  # the 300 MiB the notebook allocated
    assert row.device.startswith("CPU (") and row.gpu_peak_bytes is None


def test_time_notebook_can_save_the_outputs_of_the_timed_run(course):
    path = course / "notebooks" / "02_quick.ipynb"
    timing.time_notebook(path, "cpu", timeout=120, save=True)
    saved = nbformat.read(path, as_version=4)
    assert len(saved.cells) == 1, "the timing probe is not saved"
    assert saved.cells[0].outputs[0]["text"] == "hello\n"


def test_a_failing_notebook_is_not_saved(course):
    path = course / "notebooks" / "03_broken.ipynb"
    write_notebook(path, "print('before')", "raise ValueError('no')")
    before = path.read_bytes()
    with pytest.raises(timing.TimingError):
        timing.time_notebook(path, "cpu", timeout=120, save=True)
    assert path.read_bytes() == before


def test_a_failing_notebook_raises_a_timing_error_naming_it(course):
    path = course / "notebooks" / "03_broken.ipynb"
    write_notebook(path, "raise ValueError('the data is not here')")
    with pytest.raises(timing.TimingError, match=r"03_broken.ipynb failed under the cpu profile"):
        timing.time_notebook(path, "cpu", timeout=120)


def test_time_table_has_a_row_per_notebook_a_total_and_how_it_was_measured():
    rows = [
        timing.NotebookTiming("notebooks/a.ipynb", "cpu", "CPU (2 cores)", 61.0, 700 * 2**20),
        timing.NotebookTiming("notebooks/b.ipynb", "cpu", "CPU (2 cores)", 9.0, 600 * 2**20),
    ]
    table = timing.time_table(rows, "aigc-course time-notebooks --profile cpu", date(2026, 1, 2))
    assert "Measured 2026-01-02 with `aigc-course time-notebooks --profile cpu`" in table
    assert "| `notebooks/a.ipynb` | cpu | CPU (2 cores) | 1 min 01 s | 700 MiB |" in table
    assert "| **all 2** |  |  | **1 min 10 s** |  |" in table
    assert "GPU" not in table
    gpu_row = timing.NotebookTiming("c", "gpu", "NVIDIA H100", 5.0, 2**30, 3 * 2**30)
    assert "| Peak GPU memory |" in timing.time_table([gpu_row], "x")
    assert "| 3.0 GiB |" in timing.time_table([gpu_row], "x")
    with pytest.raises(ValueError, match="no notebooks were timed"):
        timing.time_table([], "x")


def test_replace_marked_block_needs_exactly_one_pair_of_markers():
    begin, end = timing.markers("cpu")
    text = f"a\n{begin}\nold\n{end}\nb\n"
    assert timing.replace_marked_block(text, "cpu", "new\n") == f"a\n{begin}\nnew\n{end}\nb\n"
    with pytest.raises(ValueError, match="add them where the gpu table belongs"):
        timing.replace_marked_block(text, "gpu", "new")
    with pytest.raises(ValueError, match="exactly one pair"):
        timing.replace_marked_block(text + text, "cpu", "new")


def test_cli_writes_the_table_and_readme_copy(course, capsys):
    assert cli.main(["time-notebooks", "--profile", "cpu"]) == 0
    table = (course / "docs" / "time-table-cpu.md").read_text()
    assert "`notebooks/01_memory.ipynb`" in table and "`notebooks/02_quick.ipynb`" in table
    readme = (course / "README.md").read_text()
    assert "old" not in readme and "`notebooks/02_quick.ipynb` | cpu |" in readme
    assert readme.startswith("# Course\n") and readme.endswith("## After\n")
    assert "updated" in capsys.readouterr().out


def test_cli_writes_nothing_when_a_notebook_fails(course, capsys):
    write_notebook(course / "notebooks" / "03_broken.ipynb", "1 / 0")
    readme_before = (course / "README.md").read_text()
    assert cli.main(["time-notebooks", "--profile", "cpu"]) == 1
    assert not (course / "docs").exists()
    assert (course / "README.md").read_text() == readme_before
    assert "03_broken.ipynb" in capsys.readouterr().err


def test_cli_rejects_a_missing_notebook(course, capsys):
    assert cli.main(["time-notebooks", "notebooks/99_nope.ipynb"]) == 2
    assert "no such notebook" in capsys.readouterr().err


def test_cli_timing_some_notebooks_leaves_the_readme_alone_unless_asked(course, capsys):
    readme_before = (course / "README.md").read_text()
    assert cli.main(["time-notebooks", "--profile", "cpu", "notebooks/02_quick.ipynb"]) == 0
    assert (course / "README.md").read_text() == readme_before
    assert "README not updated" in capsys.readouterr().out
    table = (course / "docs" / "time-table-cpu.md").read_text()
    assert "`notebooks/02_quick.ipynb`" in table and "01_memory" not in table
    assert "--profile cpu notebooks/02_quick.ipynb`" in table
    readme = ["--readme", "README.md"]
    assert cli.main(["time-notebooks", "notebooks/02_quick.ipynb", *readme]) == 0
    assert "`notebooks/02_quick.ipynb` | cpu |" in (course / "README.md").read_text()


def test_timing_one_notebook_updates_its_row_and_keeps_the_others(course, capsys):
    """Timing one lesson used to replace the whole table with a one-row table."""
    assert cli.main(["time-notebooks", "--profile", "cpu"]) == 0
    before = (course / "docs" / "time-table-cpu.md").read_text()
    capsys.readouterr()
    assert cli.main(["time-notebooks", "--profile", "cpu", "notebooks/02_quick.ipynb"]) == 0
    after = (course / "docs" / "time-table-cpu.md").read_text()
    kept = next(line for line in before.splitlines() if "01_memory" in line)
    assert kept in after and "`notebooks/02_quick.ipynb` | cpu |" in after
    assert "| **all 2** |" in after and after.count("| `notebooks/") == 2
    assert "Re-measured" in after and "notebooks/02_quick.ipynb`" in after
    readme = (course / "README.md").read_text()
    assert kept in readme, "the README's copy follows the (complete) table"
    rows = [line for line in after.splitlines() if line.startswith("| `")]
    total = sum(timing.parse_duration(line.split("|")[4]) for line in rows)
    assert f"**{timing.format_duration(total)}**" in after


def test_merge_table_refuses_a_table_with_other_columns():
    old = timing.time_table([timing.NotebookTiming("a", "gpu", "H200", 5.0, 2**30, 2**30)], "x")
    new = timing.time_table([timing.NotebookTiming("a", "cpu", "CPU", 5.0, 2**30)], "y")
    with pytest.raises(ValueError, match="other columns"):
        timing.merge_table(old, new, "y")
    assert timing.parse_duration("1 h 02 min") == 3720 and timing.parse_duration("7 s") == 7
