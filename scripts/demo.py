"""The demo: start the local model server, featurizer and classifier, then classify one
catalog song and one uploaded file end to end over gRPC and print the vote.

    make demo
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import grpc
import numpy as np
import soundfile as sf

from musicrec.v1 import classifier_pb2, classifier_pb2_grpc, featurizer_pb2, featurizer_pb2_grpc
from services.common.localrun import ROOT, running

GTZAN = ROOT.parent / "shared" / "data" / "gtzan_mini" / "genres"


def demo_files(tmp: Path) -> list[Path]:
    songs = [GTZAN / "disco" / "disco.00004.wav", GTZAN / "classical" / "classical.00007.wav"]
    if all(p.exists() for p in songs):
        return songs
    print(f"(no real music at {GTZAN}: using a synthetic file)")
    sr = 22050
    t = np.arange(40 * sr) / sr
    y = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sign(np.sin(2 * np.pi * 2 * t))) / 2
    path = tmp / "synthetic.wav"
    sf.write(path, y.astype(np.float32), sr)
    return [path]


def show(name: str, reply: classifier_pb2.ClassifyResponse, window) -> None:
    print(f"\n{name}: analysed {window.start_seconds:.1f}-{window.end_seconds:.1f} s ({window.policy})")
    print(f"  genre: {reply.genre}  ({reply.note})")
    print(f"  {'genre':<10} votes  prob-sum")
    for score in reply.ranking[:5]:
        print(f"  {score.genre:<10} {score.votes:>5}  {score.probability_sum:8.3f}")


def main() -> int:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        config = {"MODEL_CONFIG_FILE": str(ROOT / "models" / "models.config")}
        print("starting model server, featurizer, classifier ...")
        with (
            running("services.classifier.modelserver", config, tmp) as ms,
            running("services.featurizer", {}, tmp) as fz,
            running("services.classifier", {"TF_SERVING_ADDR": ms.address}, tmp) as cl,
            grpc.insecure_channel(fz.address) as fz_channel,
            grpc.insecure_channel(cl.address) as cl_channel,
        ):
            featurizer = featurizer_pb2_grpc.FeaturizerServiceStub(fz_channel)
            classifier = classifier_pb2_grpc.ClassifierServiceStub(cl_channel)
            for path in demo_files(tmp):
                data = path.read_bytes()
                chunks = (
                    featurizer_pb2.FeaturizeStreamRequest(chunk=data[i : i + 256 * 1024], filename=path.name)
                    for i in range(0, len(data), 256 * 1024)
                )
                features = featurizer.FeaturizeStream(chunks, timeout=60)
                reply = classifier.Classify(classifier_pb2.ClassifyRequest(mel=features.mel), timeout=60)
                show(path.name, reply, features.window)
    return 0


if __name__ == "__main__":
    sys.exit(main())
