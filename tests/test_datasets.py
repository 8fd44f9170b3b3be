"""Image data sets, the train/validation split, Tiny Shakespeare and the character tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from aigc_course import data
from aigc_course.data import images as image_module
from aigc_course.data import sources
from tests.helpers import closed_port_url, fixture_spec, make_idx_dataset, require, require_data


@pytest.fixture
def fixture_fashion(tmp_path, monkeypatch):
    """A small Fashion-MNIST-shaped data set standing in for the real one."""
    folder = tmp_path / "cache" / "fashion-mnist"
    arrays = make_idx_dataset(folder, n_train=120, n_test=40)
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "cache"))
    spec = fixture_spec("fashion-mnist", folder, (closed_port_url(),))
    monkeypatch.setitem(sources.DATASETS, "fashion-mnist", spec)
    return arrays


def test_split_is_deterministic_disjoint_and_complete():
    train, val = data.train_val_split(1000, 100, seed=3)
    train_again, val_again = data.train_val_split(1000, 100, seed=3)
    torch.manual_seed(12345)  # the global random state must not matter
    assert torch.equal(train, train_again) and torch.equal(val, val_again)
    assert len(val) == 100 and len(train) == 900
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(1000))
    _, other_val = data.train_val_split(1000, 100, seed=4)
    assert not torch.equal(val, other_val)
    with pytest.raises(ValueError, match="val_size"):
        data.train_val_split(10, 10)


def test_image_dataset_splits_and_scaling(fixture_fashion):
    train = data.load_fashion_mnist("train", val_size=20)
    val = data.load_fashion_mnist("val", val_size=20)
    test = data.load_fashion_mnist("test")
    assert (len(train), len(val), len(test)) == (100, 20, 40)
    image, label = train[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert 0.0 <= train.images.min() and train.images.max() <= 1.0
    assert label.dtype == torch.int64
    raw = torch.from_numpy(fixture_fashion["t10k-images-idx3-ubyte.gz"])
    torch.testing.assert_close(test.images[:, 0], raw.float() / 255)
    train_and_val = torch.cat([train.images, val.images]).flatten(1)
    all_train = (
        torch.from_numpy(fixture_fashion["train-images-idx3-ubyte.gz"]).float().flatten(1) / 255
    )
    assert sorted(map(tuple, train_and_val.tolist())) == sorted(map(tuple, all_train.tolist()))
    assert len(data.load_fashion_mnist("test", limit=7)) == 7
    with pytest.raises(ValueError, match="split must be"):
        data.load_fashion_mnist("validation")


def test_a_file_is_decompressed_once_per_process_and_what_callers_get_is_theirs(
    fixture_fashion, tmp_path, monkeypatch
):
    """Loading a split again reads no file again, whatever the caller did to what it got; a file
    changed on disk is read again; at most four files are kept."""
    reads = []

    def counted_read(path):
        reads.append(path.name)
        return data.read_idx(path)

    monkeypatch.setattr(image_module, "read_idx", counted_read)
    monkeypatch.setattr(image_module, "_read_files", type(image_module._read_files)())
    raw = torch.from_numpy(fixture_fashion["t10k-images-idx3-ubyte.gz"])
    first = data.load_fashion_mnist("test")
    first.images.zero_(), first.labels.zero_()
    images, labels = data.load_idx_pair("fashion-mnist", "test")
    images.zero_(), labels.zero_()
    again = data.load_fashion_mnist("test")
    assert reads == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    torch.testing.assert_close(again.images[:, 0], raw.float() / 255)
    assert again.labels.tolist() == [i % 10 for i in range(40)]

    folder = tmp_path / "cache" / "fashion-mnist"
    touched = folder / "t10k-images-idx3-ubyte.gz"  # the same bytes, a later modification time
    times = touched.stat()
    os.utime(touched, ns=(times.st_atime_ns, times.st_mtime_ns + 10**9))
    data.load_fashion_mnist("test")
    assert reads[2:] == ["t10k-images-idx3-ubyte.gz"]
    changed = make_idx_dataset(folder, n_train=120, n_test=30, seed=1)  # rewritten in place
    spec = fixture_spec("fashion-mnist", folder, (closed_port_url(),))
    monkeypatch.setitem(sources.DATASETS, "fashion-mnist", spec)
    now = data.load_fashion_mnist("test")
    assert len(now) == 30 and reads[3:] == reads[:2]
    assert torch.equal(
        now.images[:, 0], torch.from_numpy(changed["t10k-images-idx3-ubyte.gz"]) / 255
    )
    data.load_fashion_mnist("train", val_size=20)
    kept = {
        Path(path).name: (inode, size, mtime)
        for path, inode, size, mtime in image_module._read_files
    }
    assert len(image_module._read_files) == 4, "the stale entries are the ones let go"
    for name, (inode, size, mtime) in kept.items():
        now_stat = (folder / name).stat()
        assert (inode, size, mtime) == (now_stat.st_ino, now_stat.st_size, now_stat.st_mtime_ns)


def test_real_fashion_mnist(monkeypatch, tmp_path):
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "empty-cache"))
    available = all(s.ready for s in data.dataset_status(["fashion-mnist"]))
    require(available, "Fashion-MNIST is not available on this machine")
    test = data.load_fashion_mnist("test")
    assert len(test) == 10_000
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert test.classes[9] == "Ankle boot"


def test_tiny_shakespeare_and_tokenizer():
    available = all(s.ready for s in data.dataset_status(["tinyshakespeare"]))
    require(available, "Tiny Shakespeare is not available (set AIGC_DATA_PATH)")
    text = data.load_tiny_shakespeare()
    assert len(text) == 1_115_394 and text.startswith("First Citizen:")
    tokenizer = data.CharTokenizer.from_text(text)
    assert tokenizer.vocab_size == 65
    assert tokenizer.decode(tokenizer.encode(text[:5000])) == text[:5000]


def test_tokenizer_round_trip_save_load_and_errors(tmp_path):
    tokenizer = data.CharTokenizer.from_text("to be, or not to be")
    assert tokenizer.vocabulary == tuple(sorted(set("to be, or not to be")))
    ids = tokenizer.encode("not to be")
    assert tokenizer.decode(ids) == "not to be"
    assert tokenizer.decode(torch.tensor(ids)) == "not to be"
    path = tokenizer.save(tmp_path / "model" / "tokenizer.json")
    assert data.CharTokenizer.load(path) == tokenizer
    assert [p.name for p in path.parent.iterdir()] == ["tokenizer.json"]
    with pytest.raises(ValueError, match=r"\['Z', 'q'\] are not in this tokenizer"):
        tokenizer.encode("qZ")
    with pytest.raises(ValueError, match="outside"):
        tokenizer.decode([tokenizer.vocab_size])
    with pytest.raises(ValueError, match="not a saved CharTokenizer"):
        data.CharTokenizer.from_dict({"vocabulary": ["a"]})
    with pytest.raises(ValueError, match="repeated"):
        data.CharTokenizer("aa")


#: The calls through which a lesson's code loads each data set (directly or through a trainer).
LOADERS = {
    "fashion-mnist": ("load_fashion_mnist(", "fixed_test_set(", "compare_samplers("),
    "tinyshakespeare": ("load_tiny_shakespeare(", "load_data(", "load_speaker_data("),
    "tang300": ("load_tang_poems(", "load_poem_corpus("),
}


def test_each_data_set_names_the_lessons_that_load_it():
    """``doctor`` and lesson 00 say which lessons need each data set: the lessons whose code calls
    one of its loaders, no more and no fewer."""
    import json

    from tests.helpers import ROOT

    assert set(LOADERS) == set(sources.DATASETS)
    for name, calls in LOADERS.items():
        loading = set()
        for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
            code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
            if any(call in code for call in calls):
                loading.add(int(path.name[:2]))
        assert sorted(loading) == list(sources.DATASETS[name].lessons), name
    assert sources.DATASETS["fashion-mnist"].used_by == "lessons 00, 06, 07, 10, 11 and 12"


FORTUNE_FILE = (
    "\x1b[32m《静夜思》\x1b[m\n\x1b[33m作者：李白\x1b[m\n床前明月光，疑是地上霜。\n举头望明月，低头思故乡。\n%\n"
    "not a poem\n%\n"
    "\x1b[32m《春晓》\x1b[m\n\x1b[33m作者：孟浩然\x1b[m\n春眠不觉晓，处处闻啼鸟。\n"
)


def test_fortune_files_become_poems_without_their_terminal_colours():
    poems = data.parse_poems(FORTUNE_FILE)
    assert [(p.title, p.author) for p in poems] == [("《静夜思》", "李白"), ("《春晓》", "孟浩然")]
    assert poems[0].text == "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"
    corpus = data.poems_corpus(poems)
    assert "\x1b" not in corpus and corpus.count("作者：") == 2 and "not a poem" not in corpus


def test_the_tang_poems_when_debian_has_them(monkeypatch, tmp_path):
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "empty-cache"))
    require_data("tang300")
    poems = data.load_tang_poems()
    assert len(poems) == 313 and poems[0].author == "张九龄"
    assert len(set(data.poems_corpus(poems))) > 2500  # thousands of distinct characters


def test_lesson_08_skips_the_poems_with_a_clear_note_when_they_are_missing(
    monkeypatch, tmp_path, capsys
):
    from aigc_course.lessons import lesson08

    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("AIGC_IGNORE_SYSTEM_DATA", "1")
    monkeypatch.setenv("AIGC_OFFLINE", "1")
    monkeypatch.delenv("AIGC_DATA_PATH", raising=False)
    assert lesson08.load_poem_corpus() is None
    note = capsys.readouterr().out.strip()
    assert note.startswith("唐诗三百首 is not here, so this section is skipped.")
    assert "apt-get install fortunes-zh" in note and "Traceback" not in note
