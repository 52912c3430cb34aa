"""Compile a small C file shipped with cnnlab into a shared library on first use, cache it, load it.

The kernels in this folder are plain C (no torch or Python headers), so building one takes the
system C compiler a fraction of a second: `cc -O3 -march=native -shared -fPIC`. The library is
cached under $XDG_CACHE_HOME/cnnlab/native (else ~/.cache/cnnlab/native), named by a hash of the
source, the compiler, its flags and this CPU, so an edited kernel, another compiler or another
machine sharing the home folder each get their own build. It is written to a temporary name and
renamed into place, so a concurrent or interrupted build never leaves a half-written library.
A new build removes the same kernel's builds that are more than 30 days old.

Whatever goes wrong (no compiler, a failed build, a library that will not load) the caller gets
None and one logged sentence (once per reason) saying why and how to fix it, and uses torch's own
kernel instead: the native kernels only ever make things faster. CNNLAB_NATIVE=0 turns them off.
A flag set the compiler refuses is tried again by each new process (a fraction of a second);
only successful builds are cached.

Threads: where torch's OpenMP runtime is GNU libgomp under the soname a `-fopenmp` build links
against (libgomp.so.1, as in torch's Linux wheels), the kernels are built with -fopenmp, and their
`#pragma omp parallel for` runs on the same thread pool as torch's operators: the dynamic loader
hands the library the libgomp torch already loaded. Elsewhere (macOS's libomp, Intel's libiomp5)
a -fopenmp build would bring a second runtime whose threads compete with torch's for the cores,
so the kernels are built without it and run on the calling thread. `NativeLibrary.threads()` says
how many threads a call may use.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

import torch
from torch.autograd import forward_ad

from cnnlab.errors import CnnlabError

log = logging.getLogger(__name__)
_SAID: set[str] = set()  # reasons already logged: two kernels missing one compiler make one warning

HERE = Path(__file__).resolve().parent
STALE_SECONDS = 30 * 24 * 3600  # older builds of a kernel are removed when it is built anew
FLAG_SETS = (["-O3", "-march=native"], ["-O3"])  # -march=native is refused by some compilers (e.g. older Apple clang)
OPENMP_FLAG = "-fopenmp"
LIBGOMP_SONAME = "libgomp.so.1"  # what gcc -fopenmp records as the library's dependency on Linux
COMMON_FLAGS = ["-shared", "-fPIC", "-Wno-psabi"]


def tracing() -> bool:
    """True where the kernels must step aside for torch's operators:

    - under torch.compile, torch.export, TorchScript or ONNX tracing, which cannot see into a ctypes
      call (torch's operators go into the graph);
    - under torch.func's transforms (grad, vmap, jacrev, ...) and forward-mode AD
      (torch.autograd.forward_ad), which need rules (setup_context, vmap, jvp) that the kernels'
      autograd Functions do not have: torch's operators have them.
    """
    return (torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting()
            or torch._C._are_functorch_transforms_active() or forward_ad._current_level >= 0)


def enabled() -> bool:
    """False when the environment says CNNLAB_NATIVE=0 (or false/off/no)."""
    return os.environ.get("CNNLAB_NATIVE", "1").strip().lower() not in ("0", "false", "off", "no")


def cache_dir() -> Path:
    """Where built libraries live: $XDG_CACHE_HOME/cnnlab/native, else ~/.cache/cnnlab/native."""
    from cnnlab.data.sources import cache_dir as cnnlab_cache

    return cnnlab_cache() / "native"


def find_compiler() -> list[str] | None:
    """The C compiler command: $CC, else Python's own build compiler, else cc/gcc/clang on PATH."""
    candidates = [os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc", "clang"]
    for cand in candidates:
        if not cand:
            continue
        cmd = shlex.split(cand)
        if cmd and shutil.which(cmd[0]):
            return cmd
        if cand == os.environ.get("CC"):
            return None  # the user named a compiler that is not there: do not silently take another
    return None


# /proc/cpuinfo lines that name what -march=native compiles for: x86's model and flags; ARM's
# implementer, part and features (its cores may differ, big.LITTLE: every distinct line counts)
_CPU_ID_FIELDS = ("model name", "flags", "CPU implementer", "CPU architecture", "CPU variant", "CPU part",
                  "Features", "isa", "uarch")


def _cpu_id() -> str:
    """The CPU's model and feature flags (what -march=native compiles for), without the lines
    that change from one read to the next (cpu MHz, bogomips)."""
    lines: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            lines = {" ".join(line.split()) for line in f if line.split(":", 1)[0].strip() in _CPU_ID_FIELDS}
    except OSError:  # macOS and others: what Python knows of the processor
        lines = {platform.processor(), platform.platform()}
    return f"{platform.machine()} " + " | ".join(sorted(lines))


def openmp_libraries() -> set[str]:
    """Paths of the OpenMP runtimes mapped into this process (Linux's /proc/self/maps; empty elsewhere)."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            # each line: address, permissions, offset, device, inode, then the file (which may hold spaces)
            paths = {" ".join(fields[5:]) for fields in map(str.split, f) if len(fields) >= 6}
    except OSError:
        return set()
    return {p for p in paths if Path(p).name.startswith(("libgomp", "libomp", "libiomp"))}


def shares_torchs_openmp() -> bool:
    """Whether a -fopenmp build would run on torch's own OpenMP threads: torch uses OpenMP, and the
    one runtime loaded is GNU libgomp under the soname such a build asks for."""
    runtimes = openmp_libraries()
    return (len(runtimes) == 1 and Path(next(iter(runtimes))).name == LIBGOMP_SONAME
            and "OpenMP" in torch.__config__.parallel_info())


def build(source: Path, compiler: list[str], out_dir: Path, openmp: bool = False) -> Path:
    """Compile `source` into a shared library in `out_dir` (or reuse the cached one); returns its path.
    The cache key covers the source and the headers beside it, the compiler and flags, and the CPU.
    openmp: compile with -fopenmp (see "Threads" above).

    Raises:
        RuntimeError: with one sentence naming the compiler and its first error line.
    """
    text = source.read_bytes() + b"".join(h.read_bytes() for h in sorted(source.parent.glob("*.h")))
    version = subprocess.run([*compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    errors = []
    for flags in ([*f, OPENMP_FLAG] for f in FLAG_SETS) if openmp else FLAG_SETS:
        key = hashlib.sha256(b"\0".join([text, " ".join(compiler + flags + COMMON_FLAGS).encode(),
                                          version.encode(), _cpu_id().encode()])).hexdigest()[:16]
        target = out_dir / f"{source.stem}-{key}.so"
        if target.exists():
            return target
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{source.stem}-", suffix=".so", dir=out_dir)
        os.close(fd)
        try:
            done = subprocess.run([*compiler, *flags, *COMMON_FLAGS, "-o", tmp, str(source)],
                                  capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                os.replace(tmp, target)  # atomic: readers see the old state or the whole library
                _remove_stale(out_dir, source.stem, keep=target)
                return target
            lines = (done.stderr or done.stdout).strip().splitlines()
            errors.append(next((ln for ln in lines if "error" in ln), lines[0] if lines else f"exit {done.returncode}"))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise RuntimeError(f"{' '.join(compiler)} could not compile {source.name}: {errors[-1].strip()}")


def _remove_stale(out_dir: Path, stem: str, keep: Path) -> None:
    """Delete this kernel's other builds (and temp files of killed builds) last written more than
    STALE_SECONDS ago: each edit of a kernel, compiler or CPU leaves a build behind, ~30 KB each.
    Recent ones stay, so machines or versions sharing the cache do not rebuild in turn; a library
    some process has loaded keeps working after its file is unlinked."""
    now = time.time()
    for path in [*out_dir.glob(f"{stem}-*.so"), *out_dir.glob(f".{stem}-*.so")]:
        try:
            if path != keep and now - path.stat().st_mtime > STALE_SECONDS:
                path.unlink()
        except OSError:
            pass  # another process removed it first, or the folder is read-only: harmless


class NativeLibrary:
    """One C file of this folder, built and loaded on first `get()`, with its functions' signatures.

    Args:
        source: the .c file's name in cnnlab/native.
        signatures: function name -> (argtypes, restype) for ctypes.
        out_dir: where to cache the build (default: cache_dir(), read when first needed).
    """

    def __init__(self, source: str, signatures: dict[str, tuple[list, object]], out_dir: Path | None = None):
        self.source = HERE / source
        self.signatures = signatures
        self.out_dir = out_dir
        self.reason: str | None = None  # why get() returned None, once it has
        self.threaded = False  # built with -fopenmp, sharing torch's OpenMP threads
        self._lib: ctypes.CDLL | None = None
        self._tried = False
        self._lock = threading.Lock()

    def get(self) -> ctypes.CDLL | None:
        """The loaded library, or None (the reason logged once and kept in `.reason`)."""
        if self._tried:
            return self._lib
        with self._lock:
            if not self._tried:
                self._lib = self._load()
                self._tried = True
        return self._lib

    def _load(self) -> ctypes.CDLL | None:
        if not enabled():
            self.reason = "CNNLAB_NATIVE=0 turns cnnlab's C kernels off"
            return None  # asked for: nothing to log
        compiler = find_compiler()
        if compiler is None:
            named = os.environ.get("CC")
            where = f"$CC ({named}) is not on PATH" if named else "no C compiler (cc, gcc or clang) is on PATH"
            return self._give_up(f"{where}; install one (Debian: apt install gcc) for faster CPU pooling")
        try:
            out_dir = self.out_dir or cache_dir()
        except CnnlabError as e:  # no home folder to cache the build in
            return self._give_up(str(e))
        for openmp in (True, False) if shares_torchs_openmp() else (False,):
            lib, reason = self._build_and_load(compiler, out_dir, openmp)
            if lib is not None:
                # a second OpenMP runtime would mean threads of its own: then run on the caller's only
                self.threaded = openmp and len(openmp_libraries()) == 1
                return lib
            if openmp:
                log.info("cnnlab's %s does not build or load with %s (%s); building it without", self.source.name,
                         OPENMP_FLAG, reason)
        return self._give_up(reason)

    def _build_and_load(self, compiler: list[str], out_dir: Path, openmp: bool) -> tuple[ctypes.CDLL | None, str]:
        """(the loaded library, "") or (None, why not)."""
        for attempt in range(2):
            try:
                path = build(self.source, compiler, out_dir, openmp=openmp)
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                return None, str(e)
            try:
                lib = ctypes.CDLL(str(path))
                for name, (argtypes, restype) in self.signatures.items():
                    fn = getattr(lib, name)
                    fn.argtypes, fn.restype = argtypes, restype
                return lib, ""
            except (OSError, AttributeError) as e:
                if attempt == 0:  # a damaged cache entry: remove it and build once more
                    log.info("cached %s does not load (%s); rebuilding it", path.name, e)
                    path.unlink(missing_ok=True)
                    continue
                return None, f"{path} does not load: {e}"
        return None, f"{self.source.name} could not be built and loaded"  # not reached: attempt 1 returns

    def threads(self) -> int:
        """Threads a call of the kernels may use: torch's intra-op count where they share its OpenMP
        pool, else 1."""
        return torch.get_num_threads() if self.threaded else 1

    def _give_up(self, reason: str) -> None:
        self.reason = reason
        if reason not in _SAID:
            _SAID.add(reason)
            log.warning("cnnlab's C kernels are not used (%s); torch's own kernels run instead, which are "
                        "slower on the CPU; CNNLAB_NATIVE=0 silences this", reason)
        return None
