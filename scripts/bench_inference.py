"""Inference throughput: ResNet-18 on WCTE- and HK-sized images and the EdgeConv GNN on WCTE hit graphs.

For every model it times the export view (raw inputs -> normalization -> network -> physical outputs,
i.e. exactly what ``python -m recoml.export`` writes) with

* PyTorch on the CPU (fp32),
* onnxruntime on the CPU, fp32 and dynamic int8 weights,
* PyTorch on a GPU when CUDA is available (fp32, and bf16 autocast with channels_last for the CNNs).

Inputs are built from synthetic hits (``random_hit_batch``) by the models' own representations, so
their sparsity is that of real events; graph building (kNN) is not timed. Weights are untrained: timing
does not depend on them. Results: a table on stdout and, with ``--output``, JSON.

    python scripts/bench_inference.py [--threads 1] [--seconds 2] [--output bench_inference.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import OmegaConf

from recoml.conf import CONFIG_MODULE

#: (name, overrides of the training config, events per batch on CPU, on GPU, hits per event)
CASES = [
    ("resnet18 wcte", ["detector=wcte", "model=resnet18", "model.net.width=64"], 64, 1024, 300),
    ("resnet18 hk", ["detector=hk", "model=resnet18", "model.net.width=64"], 2, 256, 3000),
    ("gnn wcte", ["detector=wcte", "model=gnn"], 32, 512, 300),
]


def build_module(overrides: list[str]):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from recoml.tasks.module import RecoModule

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        paths = ["paths.data_dir=.", "paths.log_dir=.", "paths.output_dir=."]
        cfg = compose("train", overrides=[*overrides, *paths])
    return RecoModule(OmegaConf.to_container(cfg, resolve=True)).eval()


def rate(
    fn: Callable[[], object], n_events: int, seconds: float, sync: Callable[[], None] = lambda: None
) -> float:
    """Events/s of ``fn`` over at least ``seconds`` (after two warm-up calls)."""
    fn()
    fn()
    sync()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 3:
            return calls * n_events / elapsed


def bench_case(name: str, overrides: list[str], batch_cpu: int, batch_gpu: int, hits: int, args, tmp: Path):
    from recoml.exporting import export_model, quantize_int8, session, write_onnx
    from recoml.families.water_cherenkov.synthetic import random_hit_batch

    module = build_module(overrides)
    view = export_model(module)
    gen = torch.Generator().manual_seed(0)
    batch = random_hit_batch(module.detector, batch_cpu, hits, generator=gen)
    inputs = view.inputs(batch)
    rows = []

    def add(path: str, device: str, events_per_s: float, n: int) -> None:
        rows.append({"model": name, "path": path, "device": device, "batch": n,
                     "events_per_s": events_per_s, "ms_per_event": 1000.0 / events_per_s})  # fmt: skip
        print(f"{name:15s} {path:22s} {device:5s} batch {n:5d}: {events_per_s:10.1f} events/s "
              f"{1000.0 / events_per_s:9.3f} ms/event", flush=True)  # fmt: skip

    with torch.no_grad():
        add("pytorch fp32", "cpu", rate(lambda: view(*inputs), batch_cpu, args.seconds), batch_cpu)
    onnx_path = write_onnx(view, inputs, tmp / f"{name.replace(' ', '_')}.onnx", {"bench": name}, 18)
    int8_path = quantize_int8(onnx_path, tmp / f"{name.replace(' ', '_')}.int8.onnx")
    feed = {n: t.numpy() for n, t in zip(view.input_names, inputs)}
    for label, path in (("onnxruntime fp32", onnx_path), ("onnxruntime int8", int8_path)):
        sess = session(path, threads=args.threads)
        add(label, "cpu", rate(lambda s=sess: s.run(None, feed), batch_cpu, args.seconds), batch_cpu)

    if torch.cuda.is_available():
        dev = torch.device("cuda")
        gpu_batch = random_hit_batch(module.detector, batch_gpu, hits, generator=gen).to(dev)
        gview = view.to(dev)
        g_inputs = gview.inputs(gpu_batch)
        sync = torch.cuda.synchronize
        with torch.no_grad():
            fp32 = rate(lambda: gview(*g_inputs), batch_gpu, args.seconds, sync)
            add("pytorch fp32", "cuda", fp32, batch_gpu)
            if view.input_names == ("image",):
                gview = gview.to(memory_format=torch.channels_last)
                image = g_inputs[0].contiguous(memory_format=torch.channels_last)
            else:
                image = None

            def bf16() -> object:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    return gview(image) if image is not None else gview(*g_inputs)

            add("pytorch bf16", "cuda", rate(bf16, batch_gpu, args.seconds, sync), batch_gpu)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for PyTorch and onnxruntime")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timed seconds per measurement")
    parser.add_argument("--cases", nargs="*", default=[c[0] for c in CASES], help="subset of the cases")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    machine = f"{platform.processor() or platform.machine()}, {args.threads} CPU thread(s), {gpu}"
    print(f"recoml inference benchmark ({machine})")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            if case[0] in args.cases:
                rows += bench_case(*case, args=args, tmp=Path(tmp))
    if args.output:
        args.output.write_text(json.dumps({"machine": machine, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
