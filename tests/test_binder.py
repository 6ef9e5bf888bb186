"""Binder: repo2docker finds binder/ and would build an image in which the notebooks work.

No Docker here (nor in CI), so the build itself cannot run; what can be checked is everything
repo2docker decides before it: which buildpack it picks, which environment file and which
postBuild it uses, the Dockerfile it would build, and that what postBuild installs covers every
import of every notebook (a missing package would only show up as an error in a user's session).
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from repo2docker.app import Repo2Docker
from repo2docker.buildpacks import CondaBuildPack

REPO = Path(__file__).resolve().parent.parent
BINDER = REPO / "binder"

#: Distribution name -> import name, where they differ (the rest: lower case, "-" -> "_").
IMPORT_NAMES = {
    "ipython": "IPython",
    "jupyterlab": "jupyterlab",
    "opentelemetry-api": "opentelemetry",  # a namespace package: api, sdk and exporters share it
    "openai-agents": "agents",
    "pydantic-ai-slim": "pydantic_ai",
}


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _detect(repo: Path) -> Any:
    """The buildpack repo2docker would pick for ``repo`` (its own loop, as in ``build()``)."""
    r2d = Repo2Docker(repo=str(repo), dry_run=True)
    with _chdir(repo):
        for bp_class in r2d.buildpacks:
            bp = bp_class(base_image=r2d.base_image)
            if bp.detect():
                return bp
    return None


@pytest.fixture(scope="module")
def buildpack() -> Any:
    bp = _detect(REPO)
    assert bp is not None, "repo2docker found no configuration"
    return bp


@pytest.fixture(scope="module")
def dockerfile() -> str:
    """What ``jupyter-repo2docker --no-build .`` prints: the Dockerfile of the image."""
    r2d = Repo2Docker(repo=str(REPO), dry_run=True, user_id=1000, user_name="jovyan")
    r2d.initialize()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        r2d.build()  # dry run: detects, renders and prints the Dockerfile, builds nothing
    return out.getvalue()


def test_conda_buildpack_reads_binder_folder(buildpack: Any) -> None:
    assert isinstance(buildpack, CondaBuildPack)
    with _chdir(REPO):  # buildpacks look files up relative to the current directory
        _check_conda_buildpack(buildpack)


def _check_conda_buildpack(buildpack: Any) -> None:
    assert buildpack.binder_dir == "binder"
    assert buildpack.environment_yaml_path == "binder/environment.yml"
    assert buildpack.binder_path("postBuild") == "binder/postBuild"
    assert buildpack.python_version == "3.11"
    assert not buildpack.separate_kernel_env  # JupyterLab and the kernel share one environment
    assert buildpack.get_post_build_scripts() == ["binder/postBuild"]


def test_dockerfile_installs_the_environment_then_runs_post_build(dockerfile: str) -> None:
    env = dockerfile.index('env update -p ${NB_PYTHON_PREFIX} --file "binder/environment.yml"')
    chmod = dockerfile.index("RUN chmod +x binder/postBuild")
    run = dockerfile.index("RUN ./binder/postBuild")
    assert env < chmod < run


def test_cli_dry_run_prints_the_same_build() -> None:
    """The command line a maintainer would use (``--no-build``) agrees with the API."""
    exe = shutil.which("jupyter-repo2docker")
    if exe is None:
        pytest.skip("jupyter-repo2docker is not on PATH")
    out = subprocess.run(
        [exe, "--no-build", "--no-run", str(REPO)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "Building conda environment for python=3.11" in out.stderr
    assert "RUN ./binder/postBuild" in out.stdout


def test_environment_has_python_node_and_pip() -> None:
    from ruamel.yaml import YAML

    env = YAML(typ="safe").load((BINDER / "environment.yml").read_text("utf-8"))
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "conda-forge" in env["channels"]
    assert "python=3.11" in deps
    assert "pip" in deps
    node = [d for d in deps if d.startswith("nodejs")]
    assert node, "nodejs is needed to build the JupyterLab extension from a clean checkout"
    m = re.fullmatch(r"nodejs(>=|=)(\d+)", node[0].replace(" ", ""))
    assert m is not None and int(m.group(2)) >= 20


def _post_build() -> str:
    return (BINDER / "postBuild").read_text("utf-8")


def test_post_build_is_an_executable_bash_script_installing_lanepar() -> None:
    text = _post_build()
    assert text.startswith("#!/bin/bash\n")
    assert "set -euo pipefail" in text
    assert os.access(BINDER / "postBuild", os.X_OK)
    subprocess.run(["bash", "-n", str(BINDER / "postBuild")], check=True)
    assert re.search(r'python -m pip install --no-cache-dir "\.\[[a-z,]*lab[a-z,]*\]"', text)


def test_post_build_is_executable_in_git() -> None:
    """Binder clones the repository: the mode that counts is git's, not the working tree's."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "ls-files", "-s", "binder/postBuild"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("100755 "), f"binder/postBuild is not committed as executable: {out!r}"


def _installed_modules() -> set[str]:
    """Top-level modules postBuild's ``pip install ".[extras]"`` provides (besides stdlib)."""
    m = re.search(r'pip install --no-cache-dir "\.\[([a-z,]+)\]"', _post_build())
    assert m is not None
    extras = m.group(1).split(",")
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    names: set[str] = {"lanepar"}
    for req in reqs:
        dist = re.split(r"[<>=!~\[;\s]", req, maxsplit=1)[0].lower()
        if dist == "lanepar":  # a self-reference such as lanepar[lab,dask]
            continue
        names.add(IMPORT_NAMES.get(dist, dist.replace("-", "_")))
    return names


def _notebook_imports(path: Path) -> set[str]:
    nb = nbformat.read(path, as_version=4)
    found: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        # IPython magics and shell escapes are not Python; the kernel handles them.
        src = "\n".join(
            "" if line.lstrip().startswith(("%", "!")) else line
            for line in cell.source.splitlines()
        )
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
        # A dask lane imports dask.distributed lazily, inside lanepar: no import in the cell.
        if re.search(r"kind\s*=\s*[\"']dask[\"']", src):
            found.add("distributed")
    return found


@pytest.mark.parametrize("path", sorted((REPO / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_post_build_installs_everything_the_notebook_imports(path: Path) -> None:
    missing = _notebook_imports(path) - _installed_modules() - set(sys.stdlib_module_names)
    assert not missing, f"{path.name} imports {sorted(missing)}, which Binder would not install"


def test_notebooks_are_listed_for_the_launch_link() -> None:
    """The README's Binder badge opens the quick start; it must exist under that path."""
    readme = (REPO / "README.md").read_text("utf-8")
    m = re.search(r"mybinder\.org/v2/gh/[^)\s]*urlpath=lab/tree/([^)\s&]+)", readme)
    if m is None:
        pytest.skip("README has no Binder launch link")
    assert (REPO / m.group(1)).is_file()
