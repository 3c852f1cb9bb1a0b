"""Load-time repairs of ONNX files, in memory (the files on disk are never changed).

The OpenCV Zoo SFace int8 "block-quantized" file declares 174 graph inputs that no node consumes;
OpenCV 5 and onnxruntime refuse it as shipped. :func:`drop_dangling_inputs` removes them.
:func:`fold_constants` goes further: it evaluates the constant DequantizeLinear/Reshape chains once
(with the ``onnx`` reference evaluator), so the graph becomes a plain fp32 network that OpenCV's DNN
module runs about 2x faster than onnxruntime, with the same outputs (tested), and makes the batch
dimension dynamic so the embedder can be batched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: ops evaluated at load time when all their inputs are constants
_FOLDABLE = {"DequantizeLinear", "Reshape", "Constant", "Cast", "Unsqueeze", "Squeeze"}


def drop_dangling_inputs(model):  # onnx.ModelProto -> onnx.ModelProto
    graph = model.graph
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [vi for vi in graph.input if vi.name in used]
    if len(keep) != len(graph.input):
        del graph.input[:]
        graph.input.extend(keep)
    return model


def fold_constants(model, *, dynamic_batch: bool = True):  # onnx.ModelProto -> onnx.ModelProto
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    consts: dict[str, np.ndarray] = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    kept = []
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if node.op_type in _FOLDABLE and all(i in consts for i in inputs):
            outs = ReferenceEvaluator(node).run(None, {i: consts[i] for i in inputs})
            for name, value in zip(node.output, outs, strict=False):
                consts[name] = np.asarray(value)
        else:
            kept.append(node)
    used = {name for node in kept for name in node.input} | {o.name for o in graph.output}
    initializers = []
    for name, value in consts.items():
        if name in used:
            if value.dtype.kind == "f":
                value = value.astype(np.float32)
            initializers.append(numpy_helper.from_array(value, name))
    graph_inputs = [vi for vi in graph.input if vi.name in used and vi.name not in consts]
    outputs = list(graph.output)
    if dynamic_batch:
        for vi in [*graph_inputs, *outputs]:
            dims = vi.type.tensor_type.shape.dim
            if dims:
                dims[0].ClearField("dim_value")
                dims[0].dim_param = "N"
    new_graph = onnx.helper.make_graph(kept, graph.name, graph_inputs, outputs, initializers)
    remaining_ops = {n.op_type for n in kept}
    # opset 13 is enough for a plain conv net and is what OpenCV's importer knows best
    opset = 13 if not remaining_ops & {"DequantizeLinear", "QuantizeLinear"} else max(
        o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    folded = onnx.helper.make_model(new_graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    folded.ir_version = 8 if opset == 13 else max(model.ir_version, 8)
    onnx.checker.check_model(folded)
    return folded


#: bump when the repair changes, so derived files on disk are rebuilt
REPAIR_VERSION = 1


def load_fixed(path: str | Path, *, fold: bool = True, cache_dir: Path | None = None) -> bytes:
    """Read an ONNX file and return the repaired model as bytes.

    The repaired graph is deterministic, so it is kept on disk next to the model store
    (``<cache>/derived/<source sha256>-<repair>.onnx``, written atomically) and later loads skip the
    ~0.3 s of constant folding (and of importing onnx, ~0.1 s). The source file itself is never modified.
    """
    from driftbench.weights.store import cached_sha256, weights_dir

    src_hash = cached_sha256(Path(path))
    derived = (
        (cache_dir or weights_dir())
        / "derived"
        / f"{src_hash[:24]}-{'fp32' if fold else 'inputs'}-v{REPAIR_VERSION}.onnx"
    )
    if derived.is_file():
        return derived.read_bytes()
    import onnx

    model = onnx.load(str(path))
    model = drop_dangling_inputs(model)
    if fold:
        model = fold_constants(model)
    data = bytes(model.SerializeToString())
    try:
        from driftbench.io import write_bytes

        write_bytes(derived, data)
    except OSError:
        pass  # a read-only cache only costs the folding time
    return data
