"""A Python that has never heard of Vigil: a fresh virtual environment holding only ``cryptography``.

What a reviewer's machine has when they run an evidence package's ``verify_evidence.py``. The
environment gets no site-packages of the interpreter that runs the tests (so no Vigil, no
SQLAlchemy), and only ``cryptography`` plus the compiled ``_cffi_backend`` it loads at run time
are linked into it. Run it with ``-I`` so that ``PYTHONPATH``, the user site and the working
directory cannot bring Vigil back.
"""

from __future__ import annotations

import importlib.util
import subprocess
import venv
from pathlib import Path

import cryptography

__all__ = ["make_bare_python", "run_bare"]


def make_bare_python(root: Path) -> Path:
    """Create the environment under ``root``; return its interpreter."""
    env = root / "bare-env"
    venv.EnvBuilder(with_pip=False, system_site_packages=False, symlinks=True).create(env)
    site = next((env / "lib").glob("python3*/site-packages"))
    (site / "cryptography").symlink_to(Path(cryptography.__file__).parent, target_is_directory=True)
    backend = importlib.util.find_spec("_cffi_backend")
    if backend is not None and backend.origin is not None:  # older and current cryptography load it
        (site / Path(backend.origin).name).symlink_to(backend.origin)
    return env / "bin" / "python"


def run_bare(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -I args...`` in ``cwd`` with a bare environment (no PYTHONPATH, no Vigil config)."""
    return subprocess.run(
        [str(python), "-I", *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
