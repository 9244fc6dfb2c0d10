"""A bubblewrap sandbox for running a student's code: the grader's notebook runs and its workers.

What runs inside `Sandbox(...).argv(command)` (started with `preexec_fn=sandbox.preexec`):

* no network: a network namespace of its own with only a loopback (papermill and its kernel talk
  over ZMQ on 127.0.0.1 in there; nothing of the host's 127.0.0.1 is reachable);
* the whole file system read-only (the course checkout and the Python environment included), a
  private writable folder (`writable`, also its working folder and HOME), a private /tmp and
  /dev/shm (tmpfs, `tmp_bytes` each, gone when the sandbox ends), an empty /run (no host Unix
  sockets, which a network namespace does not cut off);
* `hidden` folders masked by an empty read-only tmpfs (a hidden file by an empty one) — the
  submissions, the grading work folder, the CSV — mounted *before* the private folder is bound back,
  so the private folder stays reachable even when it lies inside a hidden one; the Python
  environment, the course package and its data are bound back too, so hiding a folder that holds
  them (the checkout, as the CSV's folder) does not break Python (`Sandbox._mounts` has the order);
* its own PID, IPC and UTS namespaces: killing bwrap (what Popen started) kills everything inside;
* resource limits: RLIMIT_AS = `memory_bytes` per process, RLIMIT_NPROC = `max_processes`,
  no core files; the wall-clock limit is the caller's (`Popen.communicate(timeout=…)`, then kill).

Root graders. RLIMIT_NPROC is never enforced for real uid 0 (nor for a root mapped into bwrap's user
namespace, which is still uid 0 to the kernel), and a root process inside a mount namespace could
unmount the masks. So when the grader is root, bwrap runs without a user namespace (it is privileged
already) and the command is started through a tiny trampoline that drops to an unprivileged uid/gid
(`uid`; by default one per private folder, so parallel sandboxes do not share one process budget),
clears supplementary groups and capabilities, and execs the command; bwrap sets no_new_privs, so
nothing inside can regain them. The private folder is chowned to that uid. Folders on the way to the
Python environment or the private folder that this uid may not traverse (e.g. a 0700 /root holding
pyenv) are masked with a tmpfs and the needed paths bound back read-only.

Non-root graders. bwrap makes an unprivileged user namespace (`--unshare-user --disable-userns`), the
command runs as the grader's own uid, and RLIMIT_NPROC counts every process of that user, so
`preexec` adds the tasks the user already has to `max_processes` (parallel sandboxes share that
budget). The grader's home is masked, since its files are the sandbox uid's own; the environment and
the private folder are bound back if they lie in it.

Memory. The default torch here is a CUDA build: `import torch` alone maps 3.1 GiB of address space
(VmPeak), a small conv-net forward/backward 3.3 GiB with 2 threads; every extra thread reserves about
75 MiB more (an 8 MiB stack and a 64 MiB malloc arena): 4.5 GiB with 16 threads, 5.3 GiB with 64.
A papermill kernel that imports torch, course_utils and matplotlib and trains a small conv-net peaks
at 3.9 GiB (2 cores, 14 threads; 21 tasks in the whole sandbox, papermill included).
RLIMIT_AS limits address space, not resident memory, so the default is 4 GiB + 128 MiB per CPU,
at least 8 GiB (8 GiB on a 2-core machine, 12 GiB on 64 cores), which leaves 4-6 GiB to allocate.
The sandbox is CPU-only: it has a fresh /dev without GPUs, and CUDA's start-up reserves far more
address space than any sensible RLIMIT_AS.

`available()` tells whether bubblewrap works here; `status_of()` names a limit a run ended on.
"""
from __future__ import annotations

import functools
import os
import re
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

GiB = 1 << 30
MiB = 1 << 20


def default_memory_bytes() -> int:
    """RLIMIT_AS per process: 4 GiB + 128 MiB per CPU, at least 8 GiB (see the module's notes)."""
    return max(8 * GiB, 4 * GiB + 128 * MiB * (os.cpu_count() or 1))


def default_max_processes() -> int:
    """RLIMIT_NPROC, which counts threads: 256 + 4 per CPU (torch starts a thread per core)."""
    return 256 + 4 * (os.cpu_count() or 1)


# Runs as root inside the sandbox (its own namespaces already set up), drops to uid/gid, execs the command.
_DROP = (
    "import os, sys\n"
    "uid, gid, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]\n"
    "os.setgroups([])\n"
    "os.setresgid(gid, gid, gid)\n"
    "os.setresuid(uid, uid, uid)\n"  # from uid 0 to non-zero: permitted, effective and ambient caps are cleared
    "try:\n"
    "    os.execvp(argv[0], argv)\n"
    "except OSError as err:\n"
    "    sys.stderr.write(f'sandbox: cannot start {argv[0]}: {err}\\n')\n"
    "    os._exit(127)\n"
)


def _is_root() -> bool:
    return os.geteuid() == 0


def _traversable(path: Path, uid: int, gid: int) -> bool:
    """Whether uid/gid (no supplementary groups) may look up names in the directory `path`."""
    try:
        st = path.stat()
    except OSError:
        return True  # nothing to mask: bwrap reports a missing path itself
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


_TMPFS = (Path("/tmp"), Path("/dev/shm"))  # the private tmpfs every sandbox gets


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _environment_paths() -> list[Path]:
    """What any Python command of this environment needs, whatever is hidden: the interpreter and its
    prefixes (the venv, the base install), its site-packages, the course package (an editable
    install's source) and the datasets."""
    import site

    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable))]
    try:
        paths += site.getsitepackages()
    except AttributeError:  # some embedded interpreters have no site.getsitepackages
        pass
    try:
        from .. import paths as course_paths

        paths += [Path(course_paths.__file__).resolve().parent, course_paths.data_dir()]
    except ImportError:  # loaded on its own, outside the course package
        pass
    return [Path(p) for p in paths]


def _library_paths() -> list[Path]:
    """The rest of sys.path (what .pth files add), without the caller's working and script folders: no
    library lives there, and a grading folder might. Bound back only where no `hidden` mask covers them."""
    here = {os.getcwd(), os.path.dirname(os.path.abspath(sys.argv[0])) if sys.argv and sys.argv[0] else ""}
    return [Path(p) for p in sys.path if p and os.path.isabs(p) and p not in here]


def _own_tasks(uid: int) -> int:
    """How many tasks (threads included, as RLIMIT_NPROC counts them) real uid `uid` has now."""
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as fh:
                text = fh.read()
        except OSError:
            continue
        uids = re.search(r"^Uid:\s+(\d+)", text, re.M)
        threads = re.search(r"^Threads:\s+(\d+)", text, re.M)
        if uids and threads and int(uids[1]) == uid:
            count += int(threads[1])
    return count


@dataclass(frozen=True)
class Sandbox:
    """One sandboxed run's settings; `argv` wraps a command, `preexec` sets the limits in the child.

        sb = Sandbox(writable=work / "alice", hidden=(submissions, work))
        proc = subprocess.Popen(sb.argv(cmd), preexec_fn=sb.preexec, start_new_session=True, ...)
        proc.communicate(timeout=...)  # on timeout: proc.kill() ends the whole sandbox
        status = sb.status_of(proc.returncode, output)  # "memory limit", "process limit" or None
    """

    writable: Path  # its private folder: working folder and HOME; created and handed to the sandbox's uid
    hidden: tuple[Path, ...] = ()  # folders (or files) masked empty; the private folder is bound back after them
    memory_bytes: int = field(default_factory=default_memory_bytes)  # RLIMIT_AS of each process
    max_processes: int = field(default_factory=default_max_processes)  # RLIMIT_NPROC (threads count)
    env: Mapping[str, str] = field(default_factory=dict)  # environment additions inside
    readable: tuple[Path, ...] = ()  # more paths that must stay readable even under a mask (e.g. an input file)
    tmp_bytes: int = 1 * GiB  # size of the private /tmp and of /dev/shm (tmpfs: RAM that RLIMIT_AS does not see)
    uid: int | None = None  # the uid a root grader runs it as; None: one derived from `writable`
    gid: int | None = None  # likewise; None: equal to the uid

    def __post_init__(self):
        # Real paths: bwrap mounts on what a path resolves to.
        object.__setattr__(self, "writable", Path(os.path.realpath(self.writable)))
        object.__setattr__(self, "hidden", tuple(Path(os.path.realpath(p)) for p in self.hidden))
        object.__setattr__(self, "readable", tuple(Path(os.path.realpath(p)) for p in self.readable))
        object.__setattr__(self, "env", dict(self.env))

    def __hash__(self):
        return hash((self.writable, self.hidden, self.memory_bytes, self.max_processes,
                     tuple(sorted(self.env.items())), self.readable, self.tmp_bytes, self.uid, self.gid))

    # -- who runs it ---------------------------------------------------------------------------
    @property
    def drops_privileges(self) -> bool:
        """True when the grader is root: the command runs as `run_uid`, not as root."""
        return _is_root()

    @property
    def run_uid(self) -> int:
        if not self.drops_privileges:
            return os.getuid()
        if self.uid is not None:
            return self.uid
        # One uid per private folder (2,000,000 + 0…999,999), far above any real account: sandboxes
        # running side by side then do not share one RLIMIT_NPROC budget (which is per uid).
        return 2_000_000 + zlib.crc32(os.fsencode(self.writable)) % 1_000_000

    @property
    def run_gid(self) -> int:
        if not self.drops_privileges:
            return os.getgid()
        return self.gid if self.gid is not None else self.run_uid

    # -- set-up --------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the private folder and, for a root grader, hand it (and what is in it) to the sandbox's uid."""
        self.writable.mkdir(parents=True, exist_ok=True)
        if not self.drops_privileges:
            return
        uid, gid = self.run_uid, self.run_gid
        os.chown(self.writable, uid, gid)
        for folder, dirs, files in os.walk(self.writable):
            for name in dirs + files:
                os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)

    def environment(self) -> dict[str, str]:
        """Variables set inside: HOME and every config/cache/runtime folder in the private folder, /tmp
        as TMPDIR, then `env`. (`argv` sets them itself; this is for callers that build an env.)"""
        home = str(self.writable)
        out = {
            "HOME": home,
            "USER": "student", "LOGNAME": "student",  # getpass.getuser() for a uid without a passwd entry
            "TMPDIR": "/tmp",
            "XDG_CONFIG_HOME": f"{home}/.config",
            "XDG_CACHE_HOME": f"{home}/.cache",
            "XDG_DATA_HOME": f"{home}/.local/share",
            "XDG_RUNTIME_DIR": f"{home}/.local/run",
            "JUPYTER_CONFIG_DIR": f"{home}/.jupyter",
            "JUPYTER_DATA_DIR": f"{home}/.local/share/jupyter",
            "JUPYTER_RUNTIME_DIR": f"{home}/.local/share/jupyter/runtime",
            "IPYTHONDIR": f"{home}/.ipython",
            "MPLCONFIGDIR": f"{home}/.config/matplotlib",
            "PYTHONDONTWRITEBYTECODE": "1",  # the environment is read-only anyway
        }
        out.update(self.env)
        return out

    def _mounts(self) -> list[str]:
        """The bwrap file-system arguments, in the order they must be applied:

        1. the host's / read-only, a fresh /dev and /proc, a private /tmp and /dev/shm, an empty /run
           (no host Unix sockets: a database's or D-Bus's would be reachable without a network);
        2. a tmpfs over each folder on the way to what the sandbox needs that its uid may not traverse
           (a root grader's 0700 /root holding pyenv), and over a non-root grader's home; the rest of
           sys.path bound back read-only where 2 (or /tmp) covered it;
        3. the hidden folders (an empty tmpfs) and files (an empty file): after 2, so that nothing bound
           back there uncovers them;
        4. the environment (`_environment_paths`) and `readable` bound back read-only where any mask
           covers them: after 3, so that hiding the CSV's folder cannot hide the course's Python;
        5. the private folder, read-write: last, so it is reachable even inside a hidden folder;
        6. every mask remounted read-only (the mounts inside them keep their own flags).
        """
        uid, gid = self.run_uid, self.run_gid
        args = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        # World-writable with the sticky bit like the real ones, and sized: a tmpfs lives in RAM,
        # which RLIMIT_AS does not count.
        for tmp in _TMPFS:
            args += ["--size", str(self.tmp_bytes), "--perms", "1777", "--tmpfs", str(tmp)]

        def real(paths):
            return [Path(os.path.realpath(p)) for p in paths if os.path.exists(p)]

        def by_depth(paths):
            return sorted(set(paths), key=lambda p: (len(p.parts), str(p)))

        environment, libraries, readable = real(_environment_paths()), real(_library_paths()), real(self.readable)
        libraries = [p for p in libraries if not any(_under(p, e) for e in environment)]
        private = [Path("/run")] if os.path.isdir("/run") else []
        if not self.drops_privileges:  # the grader's own files (keys, tokens) are the sandbox uid's too
            home = Path(os.path.realpath(os.path.expanduser("~")))
            if home != Path("/") and home.is_dir():
                private.append(home)
        for path in (*environment, *libraries, *readable, self.writable):
            if not any(_under(path, m) for m in (*_TMPFS, *private)):
                private += [a for a in reversed(path.parents[:-1]) if not _traversable(a, uid, gid)][:1]
        private = by_depth(private)
        private = [d for i, d in enumerate(private)
                   if not any(_under(d, m) for m in (*_TMPFS, *private[:i]))]
        hidden = by_depth(p for p in self.hidden if p.exists())
        masks = [*_TMPFS, *private, *(h for h in hidden if h.is_dir())]
        made: set[Path] = set()
        bound: list[Path] = []  # host folders bound back into a mask

        def folders_to(dest: Path) -> list[str]:
            # bwrap creates missing folders between a mask and a mount point inside it with mode 0700,
            # which the sandbox's uid could not traverse: create them 0755 first.
            tops = [m for m in (*masks, *bound) if m in dest.parents]
            top = max(tops, key=lambda m: len(m.parts)) if tops else None
            if top is None or top in bound:
                return []  # the host's own folders lead there
            out = []
            for folder in reversed(dest.parents):
                if top in folder.parents and folder not in made and folder not in masks:
                    made.add(folder)
                    out += ["--perms", "0755", "--dir", str(folder)]
            return out

        def bind_back(paths, covering):
            out = []
            for path in by_depth(paths):
                if any(_under(path, m) for m in covering) and not any(_under(path, d) for d in bound) \
                        and not _under(path, self.writable):
                    out += folders_to(path) + ["--ro-bind", str(path), str(path)]
                    if path.is_dir():
                        bound.append(path)
            return out

        for d in private:
            args += folders_to(d) + ["--size", str(1 * MiB), "--tmpfs", str(d)]
            if d == Path("/run") and os.path.islink("/run/shm"):
                args += ["--symlink", os.readlink("/run/shm"), "/run/shm"]
        args += bind_back(libraries, [*_TMPFS, *private])
        for h in hidden:
            if h.is_dir():
                args += folders_to(h) + ["--size", str(1 * MiB), "--tmpfs", str(h)]
                bound[:] = [b for b in bound if not _under(b, h)]  # covered now
            else:
                args += folders_to(h) + ["--ro-bind", "/dev/null", str(h)]
        args += bind_back([*environment, *readable], masks)
        w = str(self.writable)
        args += folders_to(self.writable) + ["--bind", w, w]
        for d in (*private, *(h for h in hidden if h.is_dir())):
            args += ["--remount-ro", str(d)]
        return args

    def argv(self, command: list[str]) -> list[str]:
        """`command` wrapped in bwrap (prepares the private folder first: see `prepare`)."""
        self.prepare()
        w = str(self.writable)
        args = [shutil.which("bwrap") or "bwrap", *self._mounts()]
        if self.drops_privileges:
            # Root: bwrap is privileged already; no user namespace (uid 0 in one is still uid 0 to
            # RLIMIT_NPROC), the trampoline drops to run_uid instead.
            args += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
        else:
            args += ["--unshare-user", "--disable-userns", "--unshare-ipc", "--unshare-pid", "--unshare-net",
                     "--unshare-uts", "--unshare-cgroup-try"]
        args += ["--hostname", "sandbox", "--die-with-parent", "--new-session", "--chdir", w]
        for key, value in self.environment().items():
            args += ["--setenv", key, value]
        args.append("--")
        if self.drops_privileges:
            args += [sys.executable, "-I", "-S", "-c", _DROP, str(self.run_uid), str(self.run_gid)]
        return args + [str(c) for c in command]

    # -- limits --------------------------------------------------------------------------------
    def preexec(self) -> None:
        """For `preexec_fn`: the resource limits, set in the child before it execs bwrap (soft = hard,
        so nothing inside can raise them)."""
        nproc = self.max_processes
        if not self.drops_privileges:
            # Unprivileged: the kernel also checks the limit against every task of the grader's uid.
            nproc += _own_tasks(os.getuid())
        for which, value in ((resource.RLIMIT_AS, self.memory_bytes), (resource.RLIMIT_CORE, 0),
                             (resource.RLIMIT_NPROC, nproc)):
            hard = resource.getrlimit(which)[1]
            if not _is_root() and hard != resource.RLIM_INFINITY:
                value = min(value, hard)  # only root may raise a hard limit
            resource.setrlimit(which, (value, value))

    def popen_kwargs(self) -> dict:
        """What `subprocess.Popen` needs besides `argv` (the caller adds start_new_session, env, pipes)."""
        return {"preexec_fn": self.preexec}

    def status_of(self, returncode: int | None, output: str) -> str | None:
        return status_of(returncode, output)


# -- how a run ended ------------------------------------------------------------------------------
_MEMORY = re.compile(r"MemoryError|Cannot allocate memory|std::bad_alloc|can't allocate memory|"
                     r"out of memory|failed to map segment|mmap failed", re.I)
_PROCESSES = re.compile(r"BlockingIOError|Resource temporarily unavailable|can't start new thread|"
                        r"Thread creation failed|fork: retry|pthread_create failed")


def status_of(returncode: int | None, output: str) -> str | None:
    """"memory limit", "process limit" or None for a sandboxed run that ended with `returncode`.

    Call it for runs that ended on their own (a run the caller killed on timeout is a timeout): a
    SIGKILL nobody sent is the kernel's OOM killer. When both kinds of message appear, the one
    printed last wins."""
    if returncode is None or returncode == 0:
        return None
    text = output or ""
    last = {}
    for name, pattern in (("memory limit", _MEMORY), ("process limit", _PROCESSES)):
        found = [m.start() for m in pattern.finditer(text)]
        if found:
            last[name] = found[-1]
    if last:
        return max(last, key=last.get)
    if returncode in (-9, 128 + 9):  # bwrap reports a child killed by SIGKILL as 137
        return "memory limit"
    return None


# -- does it work here -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def available() -> tuple[bool, str]:
    """(True, "") when a bubblewrap sandbox starts here — tried once, then cached — else (False, why)."""
    if not sys.platform.startswith("linux"):
        return False, "not Linux (the sandbox needs Linux namespaces and bubblewrap)"
    if shutil.which("bwrap") is None:
        return False, "bubblewrap (bwrap) is not installed"
    with tempfile.TemporaryDirectory(prefix="sandbox-probe-") as tmp:
        box = Sandbox(writable=Path(tmp) / "w", memory_bytes=default_memory_bytes())
        try:
            done = subprocess.run(box.argv([sys.executable, "-c", "import socket; socket.create_server(('127.0.0.1', 0))"]),
                                  preexec_fn=box.preexec, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as err:
            return False, f"bwrap could not be run ({err})"
    if done.returncode == 0:
        return True, ""
    last = (done.stderr.strip().splitlines() or ["no message"])[-1]
    if re.search(r"namespace|uid map|Operation not permitted|Permission denied|setting up", last, re.I):
        return False, f"bwrap cannot create its namespaces here (user namespaces disabled or not permitted): {last}"
    return False, f"bwrap fails here: {last}"


# -- what a sandboxed process may see of the grader's environment ----------------------------------
_ALLOWED_ENV = ("PATH", "LANG", "LANGUAGE", "TZ", "VIRTUAL_ENV", "CONDA_PREFIX", "MPLBACKEND", "PYTHONPATH",
                "PYTHONUNBUFFERED", "PYTHONHASHSEED", "TERM")
_ALLOWED_PREFIXES = ("LC_", "COURSE_", "OMP_", "MKL_", "OPENBLAS_", "MALLOC_")


def allowed_environment(env: dict) -> dict:
    """The part of `env` a submission may see: what Python, papermill and the course need, and no
    tokens, keys or passwords the grader's shell happens to hold."""
    return {k: v for k, v in env.items() if k in _ALLOWED_ENV or k.startswith(_ALLOWED_PREFIXES)}
