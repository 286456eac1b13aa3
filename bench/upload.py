"""An upload end to end (RecommendByAudio over loopback) against its floor, in one run.

    python -m bench.upload [--clips 10] [--repeat 3]

The floor is the same work in one process with no RPC: decode only the window, resample, the
fused featurizer, one pass of the ear and the five fold heads on its embedding, called in-process
(TensorFlow, the shipped SavedModels), the vote and the index search. The service path is the
real one: recommender -> featurizer (streamed upload) -> classifier -> model server stand-in (the
ear's Predict, then five) -> search. Each clip
is timed in both paths, one clip at a time, the two paths taking turns (best of --repeat each),
so a slow spell of the machine hits both alike. This process's TensorFlow runs one thread and
sits idle while the services work. Prints medians and the ratio.
"""

from __future__ import annotations

from services.common.memory import reuse_freed_arrays
from services.common.threads import one_thread_per_worker

one_thread_per_worker()  # the services run this way
reuse_freed_arrays()  # and keep freed arrays for the next clip (services/common/server.py)

import argparse
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import grpc
import numpy as np

from bench.timing import best_of
from devtools.demo_catalog import folder_catalog
from devtools.localrun import ROOT, running
from musicrec.v1 import recommender_pb2, recommender_pb2_grpc
from services.common.modelconfig import DEFAULT_CONFIG, EAR_MODEL, read_config
from services.common.quiet_tensorflow import import_tensorflow
from services.common.upload import split_chunks
from services.featurizer.pipeline import analyse
from services.recommender.catalog import ingest
from services.recommender.catalog.reader import root_arguments, write_catalog
from services.recommender.index.space import joined
from services.recommender.index.store import load_current
from services.recommender.search.options import Options
from services.recommender.search.recommend import Query, recommend
from services.recommender.search.routing import RoutingPolicy, Vote

GTZAN = ROOT.parent / "shared" / "data" / "gtzan_mini" / "genres"


class Floor:
    """The upload's work without RPCs."""

    def __init__(self, index_dir: Path) -> None:
        tf = import_tensorflow()
        self.tf = tf
        models = {e.name: tf.saved_model.load(str(e.path)) for e in read_config(DEFAULT_CONFIG, None)}
        self.ear = models.pop(EAR_MODEL)
        self.folds = list(models.values())
        self.index = load_current(index_dir)
        self.policy = RoutingPolicy()

    def __call__(self, data: bytes, name: str) -> list:
        analysis = analyse(data, name)
        mel = self.tf.constant(analysis.features.log_mel[None])
        embedding = self.ear.signatures["serving_default"](log_mel=mel)["embedding"]
        outs = [f.signatures["serving_default"](embedding=embedding) for f in self.folds]
        probabilities = np.mean([o["probabilities"].numpy()[0] for o in outs], axis=0)
        labels = [s.decode() for s in outs[0]["labels"].numpy().reshape(-1)[: len(probabilities)]]
        ranking = [labels[i] for i in np.argsort(-probabilities)]
        vote = Vote(ranking, dict(zip(labels, probabilities.tolist(), strict=True)), 1.0)
        routes = self.policy.for_vote(vote, self.index.genres)
        vector = joined(analysis.features.vector, embedding.numpy()[0], self.index.mean)
        query = Query.one(vector, routes, Options(), fill=self.index.genres, policy=self.policy)
        return recommend(self.index, query).hits


def upload(stub, data: bytes, name: str) -> None:
    header = recommender_pb2.UploadHeader(filename=name)
    messages = [recommender_pb2.RecommendByAudioRequest(header=header)] + [
        recommender_pb2.RecommendByAudioRequest(data=piece) for piece in split_chunks(data, 256 * 1024)
    ]
    stub.RecommendByAudio(iter(messages), timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    songs = folder_catalog(GTZAN)
    if not songs:
        print(f"SKIP: no real clips under {GTZAN} (see ../shared/data/README.md)")
        return 0
    clips = [s.audio_path for s in songs[:: max(1, len(songs) // args.clips)][: args.clips]]
    with tempfile.TemporaryDirectory() as name, ExitStack() as stack:
        tmp = Path(name)
        config = {"MODEL_CONFIG_FILE": str(DEFAULT_CONFIG)}
        ms = stack.enter_context(running("services.modelserver", config, tmp))
        fz = stack.enter_context(running("services.featurizer", {}, tmp))
        cl = stack.enter_context(running("services.classifier", {**config, "TF_SERVING_ADDR": ms.address}, tmp))
        write_catalog(tmp / "catalog.csv", songs)
        addresses = ["--featurizer", fz.address, "--classifier", cl.address]
        if ingest.main(["--catalog", str(tmp / "catalog.csv"), "--index-dir", str(tmp / "index"), *addresses,
                        *root_arguments(songs)]):
            return 1
        env = {"INDEX_DIR": str(tmp / "index"), "REDIS_URL": "off", "FEATURIZER_ADDR": fz.address,
               "CLASSIFIER_ADDR": cl.address}
        rec = stack.enter_context(running("services.recommender", env, tmp))
        channel = stack.enter_context(grpc.insecure_channel(rec.address))
        stub = recommender_pb2_grpc.RecommenderServiceStub(channel)
        floor = Floor(tmp / "index")
        service_t, floor_t = [], []
        for path in clips:
            data = path.read_bytes()
            upload(stub, data, path.name)
            floor(data, path.name)
            best_service = best_floor = float("inf")
            for _ in range(args.repeat):  # in turns
                best_service = min(best_service, best_of(lambda d=data, p=path: upload(stub, d, p.name), 1))
                best_floor = min(best_floor, best_of(lambda d=data, p=path: floor(d, p.name), 1))
            service_t.append(best_service)
            floor_t.append(best_floor)
    service, base = statistics.median(service_t), statistics.median(floor_t)
    print(f"{len(clips)} real 30 s clips, one at a time, best of {args.repeat}")
    print(f"floor   (decode window, resample, fused features, the ear + 5 heads in-process, search): "
          f"{base * 1e3:7.1f} ms")
    print(f"service (RecommendByAudio over loopback: 4 servers, 8 RPCs)                           : "
          f"{service * 1e3:7.1f} ms")
    print(f"service / floor: {service / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
