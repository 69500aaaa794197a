"""The same run behind LitServe, for benchmarks/serve_compare.py: decode + transform per request, batches of up to 16 within 5 ms, the run's predictor (views, ONNX Runtime): what `headstart serve` does, on LitServe."""
import sys
import numpy as np
import litserve as ls
from fastapi import Request

RUN = sys.argv[1]; PORT = int(sys.argv[2])

class Simple(ls.LitAPI):
    def setup(self, device):
        from headstart.serve import ServedModel
        self.m = ServedModel(RUN)
    def decode_request(self, request: Request):
        from headstart.data import decode_bytes
        f = request["file"]
        return self.m.transform(decode_bytes(f.file.read(), f.filename))
    def batch(self, inputs):
        return np.stack(inputs)
    def predict(self, x):
        return self.m.fn(x)
    def unbatch(self, out):
        return list(out)
    def encode_response(self, p):
        return [{"path": "upload", "predictions": self.m.rows(np.asarray(p), 1)}]

if __name__ == "__main__":
    server = ls.LitServer(Simple(max_batch_size=16, batch_timeout=0.005), accelerator="cpu", workers_per_device=1)
    server.run(port=PORT, generate_client_file=False)
