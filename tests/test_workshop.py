"""``aigc-course workshop prepare``: filling the data cache, verifying checkpoints, ready or not."""

from __future__ import annotations

import os
import shutil

import pytest

from aigc_course import checkpoints, cli, workshop
from aigc_course.data import sources
from tests.helpers import ROOT, FileServer, fixture_spec, make_idx_dataset, require


@pytest.fixture
def fixture_data(tmp_path, monkeypatch):
    """A small IDX data set "fixture", in an empty cache's world; returns its source folder."""
    folder = tmp_path / "source" / "fixture"
    make_idx_dataset(folder)
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "cache"))
    return folder


def test_prepare_on_a_prepared_machine_says_ready_and_fills_the_cache(
    tmp_path, monkeypatch, capsys
):
    required = [spec for spec in sources.DATASETS.values() if spec.required]
    statuses = sources.dataset_status([spec.name for spec in required])
    require(all(status.ready for status in statuses), "the course data is not on this machine")
    # Whatever the usual cache holds stays reachable, as a read-only search folder.
    search = [str(sources.cache_dir()), os.environ.get("AIGC_DATA_PATH", "")]
    monkeypatch.setenv("AIGC_DATA_PATH", os.pathsep.join(part for part in search if part))
    cache = tmp_path / "cache"
    monkeypatch.setenv("AIGC_DATA_DIR", str(cache))
    monkeypatch.chdir(ROOT)
    assert cli.main(["workshop", "prepare"]) == 0
    out = capsys.readouterr().out
    assert "READY for the workshop." in out and "NOT READY" not in out
    for spec in required:
        assert f"ready      {spec.title}: {len(spec.files)} file(s) verified in {cache}" in out
        assert sorted(path.name for path in (cache / spec.name).iterdir()) == sorted(
            data_file.name for data_file in spec.files
        )
    for name in checkpoints.manifest():
        assert f"ready      checkpoint {name}: sha256 verified" in out
    assert "ready      exercises:" in out and "ready      doctor: READY" in out
    # A second run finds everything in place and copies nothing.
    assert cli.main(["workshop", "prepare"]) == 0
    assert "already in the cache" in capsys.readouterr().out


def test_prepare_without_data_gives_a_not_ready_list_with_fixes(no_data, capsys):
    assert cli.main(["workshop", "prepare"]) == 1
    out = capsys.readouterr().out
    checklist = out.split("== workshop checklist ==")[1]
    assert "NOT READY  Fashion-MNIST: Fashion-MNIST file" in checklist
    assert "fix: on a machine with internet: aigc-course data fetch fashion-mnist" in checklist
    assert "NOT READY  Tiny Shakespeare:" in checklist
    assert "NOT READY  doctor: NOT READY" in checklist
    assert "ready      checkpoint gpt_tiny_shakespeare: sha256 verified" in checklist
    assert "NOT READY: 3 problem(s) above, each with its fix" in out


def test_fill_cache_copies_a_local_copy_and_then_keeps_it(fixture_data, monkeypatch, tmp_path):
    monkeypatch.setitem(sources.DATASETS, "fixture", fixture_spec("fixture", fixture_data, ()))
    monkeypatch.setenv("AIGC_DATA_PATH", str(fixture_data.parent))
    done = sources.fill_cache("fixture")
    assert {action for _, action in done} == {f"copied from {fixture_data}"}
    for path, _ in done:
        assert path.parent == tmp_path / "cache" / "fixture"
        assert path.read_bytes() == (fixture_data / path.name).read_bytes()
    assert {action for _, action in sources.fill_cache("fixture")} == {"already in the cache"}


def test_fill_cache_replaces_a_corrupt_cache_copy(fixture_data, monkeypatch, tmp_path):
    monkeypatch.setitem(sources.DATASETS, "fixture", fixture_spec("fixture", fixture_data, ()))
    monkeypatch.setenv("AIGC_DATA_PATH", str(fixture_data.parent))
    sources.fill_cache("fixture")
    victim = tmp_path / "cache" / "fixture" / "train-labels-idx1-ubyte.gz"
    victim.write_bytes(b"not a gzip file")
    pass_through = sources.fill_cache("fixture")  # the corrupt copy is skipped, then replaced
    assert victim.read_bytes() == (fixture_data / victim.name).read_bytes()
    actions = {path.name: action for path, action in pass_through}
    assert actions[victim.name] == f"replaced a corrupt cache copy; copied from {fixture_data}"
    assert {actions[name] for name in actions if name != victim.name} == {"already in the cache"}


def test_fill_cache_downloads_what_is_nowhere_on_the_machine(fixture_data, monkeypatch, tmp_path):
    monkeypatch.delenv("AIGC_OFFLINE", raising=False)
    with FileServer(fixture_data) as server:
        monkeypatch.setitem(
            sources.DATASETS, "fixture", fixture_spec("fixture", fixture_data, (server.url,))
        )
        items = workshop.data_items(["fixture"], progress=False)
    assert items == [
        workshop.Item(
            "Fixture fixture",
            True,
            f"4 file(s) verified in {tmp_path / 'cache' / 'fixture'} (downloaded)",
        )
    ]


def test_copy_verified_leaves_nothing_when_the_checksum_is_wrong(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"some bytes")
    wrong = sources.Checksum("sha256", "0" * 64)
    with pytest.raises(sources.DataError, match="not the expected one"):
        sources.copy_verified(source, tmp_path / "out" / "copy.bin", wrong)
    assert list((tmp_path / "out").iterdir()) == []


def test_checkpoints_are_verified_by_sha256(pretrained_copy):
    names = sorted(checkpoints.manifest())
    assert len(names) >= 4
    assert all(item.ready for item in workshop.checkpoint_items())
    entry = checkpoints.manifest()["gpt_tiny_shakespeare"]
    damaged = pretrained_copy / entry["file"]
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in the weights
    damaged.write_bytes(bytes(data))
    (pretrained_copy / checkpoints.manifest()["vae_fashion_mnist"]["file"]).unlink()
    by_name = {item.name: item for item in workshop.checkpoint_items()}
    gpt, vae = by_name["checkpoint gpt_tiny_shakespeare"], by_name["checkpoint vae_fashion_mnist"]
    assert not gpt.ready and "is not the recorded" in gpt.detail
    assert "git checkout -- aigc_course/pretrained/" in gpt.fix and entry["command"] in gpt.fix
    assert not vae.ready and "is missing" in vae.detail
    assert by_name["checkpoint dcgan_fashion_mnist"].ready


def test_a_missing_manifest_is_not_ready(pretrained_copy):
    (pretrained_copy / "manifest.json").unlink()
    [item] = workshop.checkpoint_items()
    assert not item.ready and "no manifest" in item.detail


def test_software_checks_catch_old_torch_and_widgets_jupyterlab_cannot_render(monkeypatch):
    versions = {"torch": "2.1.2", "jupyterlab": "4.2.0", "notebook": None, "ipywidgets": "7.7.1"}
    monkeypatch.setattr(workshop, "_installed", versions.get)
    by_name = {item.name: item for item in workshop.software_items()}
    assert not by_name["PyTorch"].ready and "torch>=2.3" in by_name["PyTorch"].fix
    assert not by_name["ipywidgets"].ready and "would not render" in by_name["ipywidgets"].detail
    assert by_name["Jupyter"].ready
    versions.update(torch="2.13.0+cpu", ipywidgets="8.1.5", jupyterlab=None)
    by_name = {item.name: item for item in workshop.software_items()}
    assert by_name["PyTorch"].ready and by_name["ipywidgets"].ready
    assert not by_name["Jupyter"].ready and "pip install jupyterlab" in by_name["Jupyter"].fix
    versions.update(jupyterlab="3.6.0", ipywidgets="7.7.1")  # JupyterLab 3 renders 7.7
    assert {item.name: item for item in workshop.software_items()}["ipywidgets"].ready


def test_a_bad_device_setting_is_not_ready(monkeypatch):
    monkeypatch.setenv("AIGC_DEVICE", "warp-drive")
    device = {item.name: item for item in workshop.software_items()}["device"]
    assert not device.ready and "warp-drive" in device.detail


def test_exercises_out_of_sync_are_not_ready(tmp_path):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "exercises").mkdir()
    shutil.copy(ROOT / "solutions" / "00_setup.ipynb", tmp_path / "solutions")
    [item] = workshop.exercise_items(tmp_path)
    assert not item.ready and item.fix == "aigc-course build-exercises"
    shutil.copy(ROOT / "exercises" / "00_setup.ipynb", tmp_path / "exercises")
    [item] = workshop.exercise_items(tmp_path)
    assert item.ready
