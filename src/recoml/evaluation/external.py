"""Other reconstructions overlaid on a recoml run: WatChMaL output directories and fiTQun result files.

Both are read into the shape of a recoml predictions file (a classification section with
``pred_probabilities`` and the truth of the recoml run they are compared with), so the same evaluator,
binning and metric definitions serve every curve.

* **WatChMaL** (``watchmal.engine.classification.ClassifierEngine``; ``ReconstructionEngine.inference``
  writes ``<dump_path>/<name>.npy``, and WatChMaL's ``analysis.read.WatChMaLOutput`` reads them from
  ``<run>/outputs/``): ``softmax.npy`` ``(N, C)``, ``labels.npy`` ``(N,)`` class indices and
  ``indices.npy`` ``(N,)`` the events' rows in the HDF5 file. Column ``i`` is the ``i``-th value of
  ``set(engine.label_set)`` (``H5Dataset.map_labels``), read from ``<run>/.hydra/config.yaml``, else
  from ``labels.npy`` next to the recoml run's stored labels of the same events.
* **fiTQun** (ROOT tree ``fiTQun``; branches as WatChMaL's ``analysis.read.FiTQunOutput`` reads them):
  ``fq1rnll[subevent][hypothesis]`` the 1-ring best-fit -ln L (hypotheses 1 = electron, 2 = muon, first
  sub-event) and ``fqpi0nll[fit]`` the pi0 fit's -ln L (fit 0). Entry ``i`` is the store's event ``i``.
  Each class gets the posterior of its hypothesis with equal priors, ``L_k / sum_j L_j`` (accuracy,
  confusion), and a pair's discriminant is the log-likelihood ratio ``ln L_a - ln L_b`` WatChMaL's
  analysis cuts on (``muon_nll - electron_nll`` for e/mu; the posterior ratio is the same order of events
  but rounds to 0 or 1 at fiTQun's typical differences of hundreds). fiTQun's gamma hypothesis is
  not fitted (WatChMaL's analysis notes it does not work), so a gamma is scored with the electron's
  likelihood: fiTQun does not separate e from gamma, and its e/gamma curve shows that.

The events must be the recoml run's (``indices.npy`` the same set as its ``event_index``; a fiTQun file
holding every event of the store), else one sentence; ``require_same_events=false`` overlays the events
the two have in common, and the report says so.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from recoml.data.store import open_store
from recoml.errors import DataError
from recoml.prediction.reader import Predictions, SectionData, section_from_arrays

log = logging.getLogger(__name__)

#: The arrays WatChMaL's classifier engine writes (``np.save(dump_path + key + ".npy")``).
WATCHMAL_FILES = ("softmax.npy", "labels.npy", "indices.npy")
#: fiTQun's tree and the 1-ring hypothesis index of each class name (fiTQun/apfit numbering).
FITQUN_TREE = "fiTQun"
FITQUN_1R_HYPOTHESIS = {"gamma": 1, "e": 1, "electron": 1, "mu": 2, "muon": 2}
FITQUN_PI0 = ("pi0",)


def watchmal_outputs(path: str | os.PathLike[str]) -> Path | None:
    """The directory holding a WatChMaL run's output arrays (the run directory's ``outputs/``, or the
    directory itself), or None when ``path`` is not one."""
    path = Path(path)
    for where in (path / "outputs", path):
        if where.is_dir() and (where / "softmax.npy").is_file():
            return where
    return None


def fitqun_file(path: str | os.PathLike[str]) -> Path | None:
    """``path`` (``file.root`` or ``file.root:tree``) when it names a fiTQun ROOT file, else None."""
    name = str(path).split(":", 1)[0] if ".root:" in str(path) else str(path)
    return Path(name) if name.endswith(".root") else None


def is_external(path: str | os.PathLike[str]) -> bool:
    return watchmal_outputs(path) is not None or fitqun_file(path) is not None


def external_name(path: str | os.PathLike[str]) -> str:
    """The default label of an external run: its run directory's name, or the fiTQun file's stem."""
    outputs = watchmal_outputs(path)
    if outputs is not None:
        return outputs.parent.name if outputs.name == "outputs" else outputs.name
    file = fitqun_file(path)
    return file.stem if file is not None else Path(path).name


class ExternalRun:
    """A WatChMaL or fiTQun classification read as a predictions file over the events of ``reference``
    (a recoml run): what :func:`recoml.evaluation.run.evaluate_files` needs of :class:`Predictions`."""

    def __init__(
        self,
        path: Path,
        label: str,
        reference: Predictions,
        rows: np.ndarray,
        probabilities: np.ndarray,
        source: str,
        log_likelihoods: np.ndarray | None = None,
    ) -> None:
        self.path = path
        self.label = label
        self.reference = reference
        self.rows = rows  # rows of the reference run's arrays these events are, in event order
        self.probabilities = probabilities
        self.log_likelihoods = log_likelihoods
        ref = _classification_info(reference)
        self.sections: list[dict[str, Any]] = [dict(ref, prefix="")]
        self.n_events = len(rows)
        #: Every event of the reference, and only those (else require_same_events=false let it through).
        self.same_events = len(rows) == reference.n_events
        self.attrs: dict[str, Any] = {
            "task": ref["name"],
            "model": source,
            "detector": reference.attrs.get("detector"),
            "split": reference.attrs.get("split"),
            "dataset": reference.attrs.get("dataset"),
        }

    def describe(self) -> str:
        return f"{self.path} ({self.attrs['model']}) holds a classification ({self.sections[0]['name']})"

    def section(self, info: dict[str, Any]) -> SectionData:
        """The reference's truth (``true_labels``, ``aux_*``, ``event_index``) on these events, with this
        run's class probabilities (and log-likelihoods)."""
        ref = self.reference.section(_classification_info(self.reference))
        arrays: dict[str, np.ndarray] = {
            name: np.asarray(value)[self.rows]
            for name, value in ref.events.items()
            if name.startswith("aux_") or name in ("event_index", "true_labels")
        }
        arrays["pred_probabilities"] = self.probabilities
        if self.log_likelihoods is not None:
            arrays["pred_log_likelihoods"] = self.log_likelihoods
        return section_from_arrays(arrays, info, self.label, self.path, self.attrs)


def _classification_info(pred: Predictions) -> dict[str, Any]:
    found = [s for s in pred.sections if s["kind"] == "classification"]
    if not found:
        raise DataError(
            f"{pred.path}: has no classification section; WatChMaL and fiTQun outputs are overlaid on a "
            f"recoml classification run ({pred.describe()})"
        )
    return dict(found[0])


def _reference_truth(pred: Predictions) -> tuple[np.ndarray, np.ndarray, list[str], list[int]]:
    """The recoml run's ``event_index``, stored labels, class names and their stored label values."""
    info = _classification_info(pred)
    section = pred.section(info)
    names = list(info.get("class_names") or [])
    values = [int(v) for v in info.get("label_values") or range(len(names))]
    true = np.asarray(section.get("true_labels"), dtype=np.int64)
    stored = np.asarray(values, dtype=np.int64)[true]
    return np.asarray(section.get("event_index"), dtype=np.int64), stored, names, values


def _align(
    theirs: np.ndarray, ours: np.ndarray, where: str, all_of_theirs: bool, require_same_events: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``theirs`` and of ``ours`` (event indices) holding the same events, in ``ours``' order.
    Every event of ours must be in theirs, and with ``all_of_theirs`` the reverse too (WatChMaL's
    ``indices.npy``; a fiTQun file holds every event of the store), unless ``require_same_events`` is
    false: then the events in common, at least one."""
    common, ours_rows, their_rows = np.intersect1d(ours, theirs, return_indices=True)
    differ = len(common) != len(ours) or (all_of_theirs and len(common) != len(theirs))
    if len(common) == 0 or (differ and require_same_events):
        raise DataError(
            f"{where} and the recoml run hold different events ({len(theirs)} and {len(ours)} events, "
            f"{len(common)} in common), so their curves are not comparable; predict the same events, or "
            "set require_same_events=false"
        )
    order = np.argsort(ours_rows)
    return their_rows[order], ours_rows[order]


def read_watchmal(
    path: str | Path, label: str, reference: Predictions, require_same_events: bool = True
) -> ExternalRun:
    """A WatChMaL classifier run's ``softmax.npy`` / ``labels.npy`` / ``indices.npy`` over the events of
    ``reference``, its columns put in the recoml run's class order."""
    outputs = watchmal_outputs(path)
    if outputs is None:
        raise DataError(f"predictions: {path} holds no WatChMaL softmax.npy (in it or in its outputs/)")
    arrays = {}
    for name in WATCHMAL_FILES:
        file = outputs / name
        if not file.is_file():
            raise DataError(
                f"{outputs}: {name} is missing; a WatChMaL classifier run writes {WATCHMAL_FILES}"
            )
        arrays[name] = np.load(file, allow_pickle=False)
    softmax, labels, indices = (np.asarray(arrays[n]) for n in WATCHMAL_FILES)
    softmax = softmax.reshape(len(softmax), -1).astype(np.float64)
    labels, indices = labels.reshape(-1), indices.reshape(-1)
    if not (len(softmax) == len(labels) == len(indices)):
        raise DataError(
            f"{outputs}: softmax.npy, labels.npy and indices.npy have {len(softmax)}, {len(labels)} and "
            f"{len(indices)} rows; expected one row per event in each"
        )
    if indices.dtype.kind not in "iu" or len(np.unique(indices)) != len(indices):
        raise DataError(
            f"{outputs / 'indices.npy'}: expected distinct integer event indices, got {indices.dtype}"
        )
    events, stored, names, values = _reference_truth(reference)
    theirs, ours = _align(indices.astype(np.int64), events, str(outputs), True, require_same_events)
    label_set = _watchmal_label_set(outputs, softmax.shape[1], labels[theirs], stored[ours])
    missing = [n for n, v in zip(names, values) if v not in label_set]
    if missing:
        raise DataError(
            f"{outputs}: softmax.npy has no column for the classes {missing} of the recoml run (WatChMaL's "
            f"label_set {label_set}); overlay runs trained on the same classes"
        )
    columns = [label_set.index(v) for v in values]
    probs = softmax[theirs][:, columns]
    if len(columns) < softmax.shape[1]:
        log.warning(
            "%s: WatChMaL's %d classes renormalized to the recoml run's %s", outputs, softmax.shape[1], names
        )
    total = probs.sum(axis=1, keepdims=True)
    probs = np.divide(probs, total, out=np.full_like(probs, 1.0 / len(columns)), where=total > 0)
    return ExternalRun(outputs, label, reference, ours, probs, "WatChMaL")


def _watchmal_label_set(outputs: Path, n_columns: int, labels: np.ndarray, stored: np.ndarray) -> list[int]:
    """The stored label value of each softmax column: ``set(engine.label_set)`` from the run's Hydra config,
    else read off ``labels.npy`` next to the recoml run's stored labels; the two must agree."""
    from_data: dict[int, int] = {}
    for column in np.unique(labels):
        seen = np.unique(stored[labels == column])
        if len(seen) != 1 or not 0 <= int(column) < n_columns:
            raise DataError(
                f"{outputs / 'labels.npy'}: class {int(column)} holds events of stored labels "
                f"{seen.tolist()} in the recoml run; expected one class per stored label, over {n_columns} "
                "softmax columns"
            )
        from_data[int(column)] = int(seen[0])
    config = outputs.parent / ".hydra" / "config.yaml"
    if not config.is_file():
        config = outputs / ".hydra" / "config.yaml"
    label_set = OmegaConf.select(OmegaConf.load(config), "engine.label_set") if config.is_file() else None
    if label_set is not None:
        ordered = [int(v) for v in dict.fromkeys(sorted(set(int(v) for v in label_set)))]
        wrong = {c: v for c, v in from_data.items() if c >= len(ordered) or ordered[c] != v}
        if wrong or len(ordered) != n_columns:
            raise DataError(
                f"{config}: engine.label_set {list(label_set)} does not match labels.npy and softmax.npy "
                f"({n_columns} columns; classes {sorted(from_data)} hold stored labels "
                f"{[from_data[c] for c in sorted(from_data)]} in the recoml run)"
            )
        return ordered
    if len(from_data) != n_columns:
        raise DataError(
            f"{outputs}: without .hydra/config.yaml (engine.label_set) the classes of softmax.npy's "
            f"{n_columns} columns are read from labels.npy, which holds only {sorted(from_data)}"
        )
    return [from_data[c] for c in range(n_columns)]


def read_fitqun(
    path: str | Path, label: str, reference: Predictions, require_same_events: bool = True
) -> ExternalRun:
    """fiTQun's 1-ring (and pi0) likelihoods as class posteriors over the events of ``reference``."""
    import awkward as ak
    import uproot

    file = fitqun_file(path)
    tree_name = str(path).split(".root:", 1)[1] if ".root:" in str(path) else FITQUN_TREE
    if file is None or not file.is_file():
        raise DataError(f"predictions: {path} does not exist; expected a fiTQun ROOT file")
    events, _, names, _ = _reference_truth(reference)
    try:
        tree = uproot.open(file)[tree_name]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(
            f"{file}: no fiTQun tree '{tree_name}' ({exc}); expected fiTQun's output tree"
        ) from None
    needed = ["fq1rnll"] + (["fqpi0nll"] if any(n in FITQUN_PI0 for n in names) else [])
    absent = [b for b in needed if b not in tree.keys()]
    if absent:
        raise DataError(f"{file}: branch {absent[0]} is missing from tree '{tree_name}'; fiTQun writes it")
    unknown = [n for n in names if n not in FITQUN_1R_HYPOTHESIS and n not in FITQUN_PI0]
    if unknown:
        raise DataError(
            f"{file}: fiTQun has no hypothesis for the classes {unknown} of the recoml run; it scores "
            f"{sorted(FITQUN_1R_HYPOTHESIS) + list(FITQUN_PI0)}"
        )
    n_entries = int(tree.num_entries)
    _check_entries_are_store_events(file, n_entries, reference, require_same_events)
    theirs, ours = _align(np.arange(n_entries), events, str(file), False, require_same_events)
    one_ring = tree["fq1rnll"].array(entry_stop=int(theirs.max()) + 1, library="ak")
    nll = []
    for name in names:
        if name in FITQUN_PI0:
            values = tree["fqpi0nll"].array(entry_stop=int(theirs.max()) + 1, library="ak")[:, 0]
        else:
            values = one_ring[:, 0, FITQUN_1R_HYPOTHESIS[name]]
        nll.append(ak.to_numpy(values).astype(np.float64)[theirs])
    minus_nll = -np.stack(nll, axis=1)
    if not np.isfinite(minus_nll).all():
        row = int(np.flatnonzero(~np.isfinite(minus_nll).all(axis=1))[0])
        raise DataError(f"{file}: -ln L of entry {int(theirs[row])} is not finite; expected fitted events")
    shifted = np.exp(minus_nll - minus_nll.max(axis=1, keepdims=True))  # L_k / max L, no overflow
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    return ExternalRun(file, label, reference, ours, probs, "fiTQun", log_likelihoods=minus_nll)


def _check_entries_are_store_events(
    file: Path, n_entries: int, reference: Predictions, require_same_events: bool
) -> None:
    """fiTQun's entry ``i`` is the store's event ``i`` only when the file has one entry per store event."""
    store = reference.attrs.get("dataset")
    if not store or not Path(str(store)).is_file():
        log.warning("%s: the recoml run's event store is not there; entry i is taken as its event i", file)
        return
    with open_store(store) as opened:
        n_store = len(opened)
    if n_entries != n_store and require_same_events:
        raise DataError(
            f"{file}: tree has {n_entries} entries and the event store {store} {n_store} events; fiTQun's "
            "entry i must be the store's event i (run it on the same file), or set require_same_events=false"
        )


def read_external(
    path: str | Path, label: str, reference: Predictions, require_same_events: bool = True
) -> ExternalRun:
    """A WatChMaL output directory or a fiTQun file, over the events of the recoml run ``reference``."""
    if watchmal_outputs(path) is not None:
        return read_watchmal(path, label, reference, require_same_events)
    return read_fitqun(path, label, reference, require_same_events)
