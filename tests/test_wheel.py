"""The built wheel stands alone: installed into a fresh virtual environment, its ``recoml`` console script
simulates and trains in an empty directory outside the checkout, with the configs shipped in the package
and the data and outputs under the working directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from tests.helpers import REPO


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def build_wheel(tmp_path: Path) -> Path:
    """``pip wheel --no-deps`` of a copy of the sources (setuptools' build/ in a checkout can hold stale
    modules, and the checkout stays untouched), with this environment's setuptools (a dev dependency)."""
    src = tmp_path / "source"
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    dist = tmp_path / "dist"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    run([*pip_wheel, str(src), "-w", str(dist)], tmp_path)
    (wheel,) = dist.glob("recoml-*.whl")
    return wheel


def fresh_venv(tmp_path: Path, wheel: Path) -> Path:
    """A new virtual environment holding the wheel; its dependencies come from this environment through a
    ``.pth`` line (the editable recoml of this environment is not seen: .pth files there are not read)."""
    root = tmp_path / "venv"
    venv.create(root, with_pip=False)
    python = root / "bin" / "python"
    target = Path(
        run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path
        ).strip()
    )
    parents = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (target / "_recoml_test_deps.pth").write_text("\n".join(parents) + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps"]
    run([*pip, "--ignore-installed", str(wheel)], tmp_path)
    return root


def test_wheel_in_a_fresh_venv_simulates_and_trains_in_an_empty_directory(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    root = fresh_venv(tmp_path, wheel)
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECOML_", "PYTHON"))}
    env.update(OMP_NUM_THREADS="1", PATH=f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}")

    where = run([str(root / "bin" / "python"), "-c", "import recoml; print(recoml.__file__)"], work, env)
    package = Path(where.strip()).parent
    assert package.is_relative_to(root), where  # the wheel's recoml, not the checkout's
    before = sorted(p.relative_to(package) for p in package.rglob("*") if "__pycache__" not in p.parts)
    assert Path("conf/train.yaml") in before and Path("conf/detector/wcte.yaml") in before

    assert "simulate" in run(["recoml", "--help"], work, env)
    run(["recoml", "simulate", "n_events=300"], work, env)
    assert (work / "data" / "toy_wcte.h5").is_file() and (work / "data" / "toy_wcte_splits.npz").is_file()
    run(["recoml", "train", "debug=fdr"], work, env)
    (run_dir,) = (work / "outputs" / "debug" / "train" / "runs").iterdir()  # debug runs: their own tree
    assert (run_dir / "config.yaml").is_file() and (run_dir / "metrics.json").is_file()

    after = sorted(p.relative_to(package) for p in package.rglob("*") if "__pycache__" not in p.parts)
    assert after == before  # nothing written into the installed package
    assert sorted(p.name for p in work.iterdir()) == ["data", "outputs"]
