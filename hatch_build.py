"""Compile lanepar's C step driver (``lanepar/trace/_stepc.c``) into the wheel, where it can.

Why a hook of our own rather than setuptools or a CMake backend: the extension is one C module
(``_stepc.c``, which includes ``_recordc.c``, ``_handc.c``, ``_watchc.c``, ``_procc.c`` and
``_latec.c``) with no dependency but ``Python.h``, and lanepar must install everywhere. Where
this cannot compile it (no compiler, not Linux, not CPython), the wheel is built without it and
``lanepar.trace.probe`` runs the same state machine in Python (``DRIVER == "python"``), as
``lanepar.run._settle`` settles records, ``lanepar.run._hotpath`` hands bodies to threads and
``lanepar.trace.threadstate`` splits a body's off-CPU time in Python.
``LANEPAR_NO_EXT=1`` skips it on purpose.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = "lanepar/trace/_stepc.c"


def compile_extension(root: Path) -> Path:
    """Build ``_stepc<EXT_SUFFIX>`` beside its source (for the wheel, and for an editable
    install, which imports from the source tree); raises what the compiler said."""
    src = root / SOURCE
    out = src.with_name("_stepc" + str(sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
    if sys.implementation.name != "cpython" or not sys.platform.startswith("linux"):
        raise RuntimeError(f"the C step driver is for CPython on Linux, not {sys.platform}")
    cc = shlex.split(str(sysconfig.get_config_var("CC") or "cc"))
    include = sysconfig.get_paths()["include"]
    cmd = [*cc, "-O2", "-shared", "-fPIC", f"-I{include}", str(src), "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr.strip()}")
    return out


class StepDriverHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or os.environ.get("LANEPAR_NO_EXT"):
            return
        try:
            out = compile_extension(Path(self.root))
        except (OSError, RuntimeError) as e:
            self.app.display_warning(f"lanepar: no C step driver ({e}); the Python one is used")
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":  # (gitignored, so named here to be packed)
            build_data["force_include"][str(out)] = str(out.relative_to(self.root))
