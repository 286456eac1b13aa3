"""Reference outputs of musicnn's original graph, recorded once on fixed inputs.

The wheel's checkpoint carries its training graph (`.meta`). Its inference part (everything
but the optimiser, the gradients and the saver) is imported into a TF1 session, its variables
are set from the checkpoint and it is run with is_training False: the outputs the package's
own code would give, without its code. The rebuilt network (musicnn.py) and the exported
SavedModel are pinned against these numbers (tests/unit/test_ear.py).

    python -m training.ear.convert --record-reference    # rewrites tests/data/musicnn_reference.npz
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.common.quiet_tensorflow import import_tensorflow
from training.ear.musicnn import N_BANDS, PATCH_FRAMES

tf = import_tensorflow()

REFERENCE = Path(__file__).resolve().parents[2] / "tests" / "data" / "musicnn_reference.npz"
SEED = 2019
N_PATCHES = 4
# the original graph's tensors (names in the checkpoint's .meta)
INPUT, IS_TRAINING = "model/Placeholder:0", "model/Placeholder_2:0"
EMBEDDING, TAGS = "model/batch_normalization_10/batchnorm/add_1:0", "model/Sigmoid:0"


def fixed_patches() -> np.ndarray:
    """Four patches [4, 187, 96] a real clip's range could hold: log10(10000 mel + 1) of a
    smooth random spectrum (0-4.5), one of them quiet, one with a loud band."""
    rng = np.random.default_rng(SEED)
    base = rng.gamma(2.0, 0.6, (N_PATCHES, PATCH_FRAMES, N_BANDS)).astype(np.float32)
    base[1] *= 0.1
    base[2, :, 10:20] += 2.5
    return np.clip(base, 0.0, 4.5)


def _inference_graph(meta_path: Path):
    """The .meta's GraphDef without training, gradient and saver nodes (and what needs them)."""
    from tensorflow.core.framework import graph_pb2
    from tensorflow.core.protobuf import meta_graph_pb2

    meta = meta_graph_pb2.MetaGraphDef()
    meta.ParseFromString(meta_path.read_bytes())
    graph = graph_pb2.GraphDef()
    graph.versions.CopyFrom(meta.graph_def.versions)
    dropped = ("gradients/", "save/", "beta1_power", "beta2_power")
    kept = {n.name: n for n in meta.graph_def.node if not n.name.startswith(dropped) and "Adam" not in n.name}
    changed = True
    while changed:  # drop nodes whose inputs were dropped
        missing = [name for name, n in kept.items() if any(i.lstrip("^").split(":")[0] not in kept for i in n.input)]
        for name in missing:
            del kept[name]
        changed = bool(missing)
    for node in kept.values():
        copy = graph.node.add()
        copy.CopyFrom(node)
        copy.attr.pop("_output_shapes", None)  # stale shapes from the training run
    return graph


def run_original(checkpoint_prefix: str, patches: np.ndarray) -> dict[str, np.ndarray]:
    """The original graph's per-patch embedding and tags."""
    reader = tf.compat.v1.train.NewCheckpointReader(checkpoint_prefix)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(_inference_graph(Path(checkpoint_prefix + ".meta")), name="")
        variables = [op.name for op in graph.get_operations() if op.type == "VariableV2"]
        assigns = [tf.compat.v1.assign(graph.get_tensor_by_name(f"{v}:0"), reader.get_tensor(v)) for v in variables]
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(assigns)
            embedding, tags = session.run(
                [EMBEDDING, TAGS], feed_dict={INPUT: patches, IS_TRAINING: False}
            )
    return {"embedding": embedding, "tags": tags}


def record(checkpoint_prefix: str, path: Path = REFERENCE) -> Path:
    outputs = run_original(checkpoint_prefix, fixed_patches())
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, seed=SEED, **outputs)
    return path
