"""Conversion throughput and peak memory for synthetic WCTE-sized flat WCSim ROOT files.

    python scripts/bench_convert.py                       # 1,000,000 events of ~300 hits
    python scripts/bench_convert.py --events 200000 1000000   # memory must not grow with the size
    python scripts/bench_convert.py --events 100000 --compression none --positions

Each input is written with uproot (tree ``events``: tube, charge, time per hit; truth per event), then
converted by ``recoml.conversion.convert_root`` in a fresh process, whose peak RSS is that of the
conversion alone. Prints events/s, input MB/s (file bytes on disk) and peak RSS; with several sizes, the
peak RSS of each relative to the smallest. ``--positions`` stores hit positions instead of tube ids and
converts them with KD-tree matching to the WCTE PMTs (``flat_wcsim`` mapping).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from recoml.conf import CONF_DIR

log = logging.getLogger("bench_convert")


def _convert_child(
    src: str, out: str, mapping_name: str, chunk_size: int, n_workers: int, hash_inputs: bool, queue
) -> None:
    """Runs in a fresh process: import, convert, report time and the RSS after imports."""
    from omegaconf import OmegaConf

    from recoml.conversion.mapping import parse_mapping
    from recoml.conversion.pipeline import convert_root

    detector = None
    mapping = parse_mapping(OmegaConf.load(CONF_DIR / "convert" / f"{mapping_name}.yaml"))
    if mapping.pmt_match is not None:
        from hydra.utils import instantiate

        detector = instantiate(OmegaConf.load(CONF_DIR / "detector" / "wcte.yaml"))
    base_kb = _peak_rss_kb()
    t0, c0 = time.perf_counter(), time.process_time()
    convert_root(
        src, out, mapping, detector=detector, chunk_size=chunk_size, n_workers=n_workers,
        hash_inputs=hash_inputs, progress=False, overwrite=True,
    )  # fmt: skip
    queue.put((time.perf_counter() - t0, time.process_time() - c0, base_kb, _peak_rss_kb()))


def _peak_rss_kb() -> int:
    """This process's peak RSS (VmHWM: reset at exec, unlike ru_maxrss, which a spawned child inherits)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_one(n_events: int, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from recoml.conversion.synthetic import write_flat_wcsim
    from recoml.data.store import open_store

    src = workdir / f"bench_{n_events}.root"
    out = workdir / f"bench_{n_events}.h5"
    positions = None
    if args.positions:
        positions = instantiate(OmegaConf.load(CONF_DIR / "detector" / "wcte.yaml")).pmt_positions
    compression = "default" if args.compression == "zlib" else None
    t0 = time.perf_counter()
    write_flat_wcsim(
        src, n_events, mean_hits=args.hits, pmt_positions=positions, position_jitter=0.5,
        compression=compression, chunk_size=20_000,
    )  # fmt: skip
    write_s = time.perf_counter() - t0
    size_mb = src.stat().st_size / 1e6
    log.info("wrote %s: %d events, %.0f MB in %.1f s", src, n_events, size_mb, write_s)

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    mapping = "flat_wcsim" if args.positions else "flat_wcsim_tubes"
    proc = ctx.Process(
        target=_convert_child,
        args=(str(src), str(out), mapping, args.chunk_size, args.n_workers, not args.no_hash, queue),
    )
    proc.start()
    elapsed, cpu, base_kb, peak_kb = queue.get()
    proc.join()
    if proc.exitcode:
        raise SystemExit(f"conversion of {src} failed (exit code {proc.exitcode})")
    store = open_store(out)
    assert store.n_events == n_events, (store.n_events, n_events)
    n_hits = store.n_objects("hits")
    row = {
        "events": n_events,
        "hits": n_hits,
        "input_mb": size_mb,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "events_per_s": n_events / elapsed,
        "input_mb_per_s": size_mb / elapsed,
        "peak_rss_mb": peak_kb / 1024,
        "rss_after_imports_mb": base_kb / 1024,
    }
    if not args.keep:
        src.unlink()
        out.unlink()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000], help="event counts to run")
    parser.add_argument("--hits", type=float, default=300.0, help="mean hits per event (Poisson)")
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--n-workers", type=int, default=1)
    parser.add_argument(
        "--compression", choices=("zlib", "none"), default="zlib", help="zlib: uproot's default"
    )
    parser.add_argument("--positions", action="store_true", help="hit positions + KD-tree PMT matching")
    parser.add_argument("--no-hash", action="store_true", help="skip the sha256 of the input")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the input and output files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_convert_"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for n in sorted(args.events):
            rows.append(run_one(n, args, workdir))
            r = rows[-1]
            print(
                f"{r['events']:>9,d} events {r['hits']:>12,d} hits "
                f"{r['input_mb']:8.0f} MB ({args.compression}) "
                f"{r['seconds']:7.1f} s (CPU {r['cpu_seconds']:.1f} s)  {r['events_per_s']:9,.0f} events/s  "
                f"{r['input_mb_per_s']:6.1f} MB/s  "
                f"peak RSS {r['peak_rss_mb']:6.0f} MB (after imports {r['rss_after_imports_mb']:.0f} MB)",
                flush=True,
            )
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if len(rows) > 1:
        ref = rows[0]["peak_rss_mb"]
        for r in rows:
            print(
                f"peak RSS at {r['events']:,d} events: {r['peak_rss_mb'] / ref:.2f} x "
                f"that at {rows[0]['events']:,d}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
