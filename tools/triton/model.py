# The Triton python-backend model `spatialbot-edge triton-repo --python` writes for each graph of
# a model folder: onnxruntime runs the graph (`model.onnx` beside this file) on the server's CPU.
# The decoder keeps each sequence's key/value cache here, keyed by the sequence batcher's
# correlation id (control inputs START, END, CORRID), so a client sends only the new positions'
# embeddings per step, never the cache.
#
# The stub runs an embedded interpreter that ignores PYTHONPATH; its entries are added to
# sys.path here so numpy and onnxruntime come from the environment the server was started with.
import json
import os
import sys
import time
from collections import OrderedDict

for _p in reversed([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


def _param(config, key, default):
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return default if value is None else value


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.graph = _param(config, "graph", "")
        here = os.path.join(args["model_repository"], args["model_version"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(_param(config, "threads", "1"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.path.join(here, "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.past = [n for n in self.inputs if n.startswith("past_")]
        self.past_shape = {}
        for i in self.session.get_inputs():
            if i.name.startswith("past_"):
                self.past_shape[i.name] = [d if isinstance(d, int) else 0 for d in i.shape]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.max_sequences = int(_param(config, "max_sequences", "64"))
        # A slow server on purpose (the deadline tests): each execute waits this long first.
        self.delay_s = float(_param(config, "delay_ms", "0")) / 1000.0
        # correlation id -> {past_key_i: array, ...}, oldest first.
        self.sequences = OrderedDict()

    def execute(self, requests):
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        if self.graph == "decoder":
            return [self._decode(r) for r in requests]
        return self._batched(requests)

    def _batched(self, requests):
        # vision (dynamic batching: several robots' images in one run) and embed.
        name = self.inputs[0]
        arrays = [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
        if self.graph == "vision" and len(arrays) > 1:
            sizes = [a.shape[0] for a in arrays]
            out = self.session.run([self.outputs[0]], {name: np.concatenate(arrays)})[0]
            responses, at = [], 0
            for n in sizes:
                responses.append(
                    pb_utils.InferenceResponse([pb_utils.Tensor(self.outputs[0], out[at : at + n])])
                )
                at += n
            return responses
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor(self.outputs[0], self.session.run([self.outputs[0]], {name: a})[0])]
            )
            for a in arrays
        ]

    def _decode(self, request):
        def control(name):
            t = pb_utils.get_input_tensor_by_name(request, name)
            return 0 if t is None else int(t.as_numpy().reshape(-1)[0])

        corrid, start, end = control("CORRID"), control("START"), control("END")
        feeds = {
            n: pb_utils.get_input_tensor_by_name(request, n).as_numpy()
            for n in ("inputs_embeds", "attention_mask", "position_ids")
        }
        state = None if start else self.sequences.get(corrid)
        if state is None and not start:
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"sequence {corrid}: no cache (not started, or evicted)")
            )
        if state is None:
            state = {n: np.zeros(s, np.float32) for n, s in self.past_shape.items()}
        past_len = next(iter(state.values())).shape[2] if state else 0
        seq = feeds["inputs_embeds"].shape[1]
        if feeds["attention_mask"].shape[1] != past_len + seq:
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(
                    f"sequence {corrid}: attention_mask covers {feeds['attention_mask'].shape[1]} positions, the cache holds {past_len} + {seq} new"
                )
            )
        feeds.update(state)
        out = dict(zip(self.outputs, self.session.run(self.outputs, feeds)))
        self.sequences.pop(corrid, None)
        if not end:
            self.sequences[corrid] = {
                n: out["present_" + n[len("past_") :]] for n in self.past_shape
            }
            while len(self.sequences) > self.max_sequences:
                self.sequences.popitem(last=False)
        return pb_utils.InferenceResponse([pb_utils.Tensor("logits", out["logits"])])

    def finalize(self):
        self.sequences.clear()
