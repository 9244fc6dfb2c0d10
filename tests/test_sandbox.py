"""The grader's bubblewrap sandbox: what a submission can see, write, reach and spend.

Small `python -c` programs run inside `Sandbox(...).argv([...])` in a folder laid out like a grading
run (root/submissions/{alice,bob}, root/work/{alice,bob}, root/grades.csv), alice's work folder being
the writable one. The layout is made twice: under /var/tmp, where nothing but the sandbox's own masks
hides it, and under pytest's tmp_path in /tmp, which the private /tmp covers.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from course_utils.classroom import sandbox as sandbox_module
from course_utils.classroom.sandbox import GiB, Sandbox, available, status_of
from course_utils.paths import repo_root

OK, WHY = available()
pytestmark = pytest.mark.skipif(not OK, reason=f"no working bubblewrap sandbox here: {WHY}")

ROOT = os.geteuid() == 0
SECRET = "bob's answers"
GRADES = "student,points\nbob,10\n"


def _layout(base: Path) -> Path:
    root = base / "grading"
    for folder in ("submissions/alice", "submissions/bob", "work/alice", "work/bob"):
        (root / folder).mkdir(parents=True)
    (root / "submissions/alice/01_fgsm.ipynb").write_text("{}")
    (root / "submissions/bob/secret.txt").write_text(SECRET)
    (root / "work/bob/out.txt").write_text(SECRET)
    (root / "grades.csv").write_text(GRADES)
    for folder in (base, *root.rglob("*")):  # readable by anyone, as a real grading folder would be
        if folder.is_dir():
            folder.chmod(0o755)
    root.chmod(0o755)
    return root


@pytest.fixture(params=["var-tmp", "tmp"])
def root(request, tmp_path):
    if request.param == "tmp":
        yield _layout(tmp_path)
        return
    if not os.access("/var/tmp", os.W_OK):
        pytest.skip("/var/tmp is not writable")
    base = Path(tempfile.mkdtemp(prefix="sandbox-test-", dir="/var/tmp"))
    try:
        yield _layout(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _alice(root: Path, **kw) -> Sandbox:
    return Sandbox(writable=root / "work/alice", hidden=(root / "submissions", root / "work", root / "grades.csv"), **kw)


def _run(box: Sandbox, program: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(box.argv([sys.executable, "-c", textwrap.dedent(program), *args]), preexec_fn=box.preexec,
                          capture_output=True, text=True, timeout=timeout, start_new_session=True)


def _tasks_of(uid: int) -> int:
    return sandbox_module._own_tasks(uid)


PROBE = """
import json, os, sys

def attempt(op, path):
    try:
        if op == "read":
            return ["ok", open(path).read()]
        if op == "list":
            return ["ok", sorted(os.listdir(path))]
        with open(path, "w") as fh:
            fh.write("written in the sandbox")
        return ["ok", None]
    except OSError as err:
        return [type(err).__name__, None]

report = {name: attempt(op, path) for name, (op, path) in json.loads(sys.argv[1]).items()}
report["uid"] = os.getuid()
report["caps"] = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]
report["cwd"] = os.getcwd()
report["home"] = os.environ["HOME"]
print(json.dumps(report))
"""


def test_files_hidden_read_only_and_private(root):
    alice, marker = root / "work/alice", f"sandbox-{uuid.uuid4().hex}"
    box = _alice(root)
    ops = {
        "bob's secret": ("read", root / "submissions/bob/secret.txt"),
        "bob's work": ("read", root / "work/bob/out.txt"),
        "submissions": ("list", root / "submissions"),
        "work": ("list", root / "work"),
        "grades": ("read", root / "grades.csv"),
        "course": ("write", repo_root() / f"{marker}.txt"),
        "environment": ("write", Path(sys.prefix) / f"{marker}.txt"),
        "root": ("write", root / f"{marker}.txt"),
        "bob's folder": ("write", root / "submissions/bob/x.txt"),
        "alice's folder": ("write", alice / "mine.txt"),
        "tmp": ("write", f"/tmp/{marker}"),
        "shm": ("write", f"/dev/shm/{marker}"),
    }
    done = _run(box, PROBE, json.dumps({k: [op, str(p)] for k, (op, p) in ops.items()}))
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)

    # Other students' folders and the grader's output cannot be seen.
    assert got["bob's secret"][0] == "FileNotFoundError"
    assert got["bob's work"][0] == "FileNotFoundError"
    assert got["submissions"] in (["ok", []], ["FileNotFoundError", None])
    assert got["work"] == ["ok", ["alice"]]  # only the way to its own folder
    assert got["grades"][0] != "ok" or GRADES not in got["grades"][1]
    # Nothing outside its own folder, /tmp and /dev/shm is writable, the course checkout included.
    for name in ("course", "environment", "root", "bob's folder"):
        assert got[name][0] in ("OSError", "PermissionError", "FileNotFoundError"), (name, got[name])
        assert not Path(ops[name][1]).exists()
    assert got["alice's folder"] == ["ok", None]
    assert (alice / "mine.txt").read_text() == "written in the sandbox"
    assert got["tmp"] == ["ok", None] and got["shm"] == ["ok", None]
    assert not Path(f"/tmp/{marker}").exists() and not Path(f"/dev/shm/{marker}").exists()  # private
    assert got["cwd"] == str(alice.resolve()) and got["home"] == str(alice.resolve())
    if ROOT:  # a root grader's sandbox runs as an unprivileged uid, without capabilities
        assert got["uid"] not in (0, os.getuid()) and got["uid"] == box.run_uid
        assert int(got["caps"], 16) == 0
        assert (alice / "mine.txt").stat().st_uid == box.run_uid


def test_no_network_but_loopback_inside(tmp_path):
    root = _layout(tmp_path)
    host = socket.create_server(("127.0.0.1", 0))  # listening on the host's loopback
    port = host.getsockname()[1]
    program = """
    import socket, sys, threading
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
        print("host reached")
    except OSError as err:
        print("host unreachable:", type(err).__name__)
    server = socket.create_server(("127.0.0.1", 0))
    def echo():
        conn, _ = server.accept()
        conn.sendall(conn.recv(100).upper())
    threading.Thread(target=echo, daemon=True).start()
    client = socket.create_connection(server.getsockname(), timeout=3)
    client.sendall(b"ping")
    print("loopback:", client.recv(100).decode())
    print("interfaces:", sorted(name for _, name in socket.if_nameindex()))
    """
    try:
        done = _run(_alice(root), program, str(port))
    finally:
        host.close()
    assert done.returncode == 0, done.stderr
    assert "host unreachable: ConnectionRefusedError" in done.stdout  # a network namespace of its own
    assert "loopback: PING" in done.stdout  # papermill and its kernel talk like this
    assert "interfaces: ['lo']" in done.stdout


def test_fork_bomb_is_stopped(tmp_path):
    root = _layout(tmp_path)
    box = _alice(root, max_processes=64)
    start = time.perf_counter()
    done = _run(box, "import os\nwhile True:\n    os.fork()\n", timeout=60)
    assert time.perf_counter() - start < 30
    assert done.returncode != 0
    assert status_of(done.returncode, done.stdout + done.stderr) == "process limit"
    # Its first process ended, so its PID namespace (every fork left) went with it.
    deadline = time.time() + 10
    while ROOT and _tasks_of(box.run_uid) and time.time() < deadline:
        time.sleep(0.1)
    if ROOT:
        assert _tasks_of(box.run_uid) == 0


def test_memory_limit(tmp_path):
    root = _layout(tmp_path)
    box = _alice(root, memory_bytes=1 * GiB)
    program = """
    chunks = []
    while True:
        chunks.append(b"x" * (100 << 20))  # 100 MB, every page touched
        print(len(chunks), flush=True)
    """
    start = time.perf_counter()
    done = _run(box, program, timeout=60)
    assert time.perf_counter() - start < 30
    assert done.returncode != 0
    assert status_of(done.returncode, done.stdout + done.stderr) == "memory limit"
    assert int(done.stdout.split()[-1]) < 11  # stopped near 1 GiB, not by the machine running out


def test_killing_bwrap_kills_everything_inside(tmp_path):
    root = _layout(tmp_path)
    box = _alice(root)
    beat = root / "work/alice/beat"
    program = """
    import subprocess, sys, time
    heart = "import time\\nwhile True:\\n    open('beat', 'a').write('.')\\n    time.sleep(0.05)"
    subprocess.Popen([sys.executable, "-c", heart], start_new_session=True)  # tries to get away
    time.sleep(600)
    """
    proc = subprocess.Popen(box.argv([sys.executable, "-c", textwrap.dedent(program)]), preexec_fn=box.preexec,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 30
        while not (beat.exists() and beat.stat().st_size > 3) and time.time() < deadline:
            time.sleep(0.05)
        assert beat.exists(), "the heartbeat never started"
    finally:
        proc.kill()  # what a caller does on timeout: bwrap only
        proc.wait()
    time.sleep(0.5)
    size = beat.stat().st_size
    time.sleep(0.5)
    assert beat.stat().st_size == size  # the grandchild in its own session is gone too
    if ROOT:
        assert _tasks_of(box.run_uid) == 0


def test_torch_with_the_default_limit(tmp_path):
    root = _layout(tmp_path)
    box = _alice(root)
    program = """
    import re, torch
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 26 * 26, 10))
    m(torch.rand(16, 1, 28, 28)).sum().backward()
    print(torch.ones(3).sum().item())
    print("VmPeak", re.search(r"VmPeak:\\s*(\\d+)", open("/proc/self/status").read())[1])
    """
    done = _run(box, program, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "3.0"
    peak = int(done.stdout.split()[-1]) * 1024
    assert peak < box.memory_bytes


def test_papermill_runs_a_notebook_inside(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    root = _layout(tmp_path)
    alice = root / "work/alice"
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1 + 1"),
        nbformat.v4.new_code_cell("import os\nopen('done.txt', 'w').write(f'{x} {os.getcwd()}')\nprint(x)"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, alice / "tiny.ipynb")
    box = _alice(root)
    cmd = [sys.executable, "-m", "papermill", str(alice / "tiny.ipynb"), str(alice / "tiny.out.ipynb"),
           "--cwd", str(alice), "--kernel", "python3", "--no-progress-bar"]
    done = subprocess.run(box.argv(cmd), preexec_fn=box.preexec, capture_output=True, text=True, timeout=120,
                          start_new_session=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (alice / "done.txt").read_text() == f"2 {alice.resolve()}"
    executed = nbformat.read(alice / "tiny.out.ipynb", as_version=4)
    assert executed.cells[1].outputs[0]["text"].strip() == "2"


def test_parallel_sandboxes_get_their_own_uid(tmp_path):
    root = _layout(tmp_path)
    alice, bob = _alice(root), Sandbox(writable=root / "work/bob")
    if not ROOT:
        assert alice.run_uid == bob.run_uid == os.getuid()
        return
    assert alice.run_uid != bob.run_uid and 0 not in (alice.run_uid, bob.run_uid)
    assert Sandbox(writable=root / "work/bob", uid=65534).run_uid == 65534
    assert alice.run_uid == _alice(root).run_uid  # stable for a folder


def _system_python() -> str | None:
    """A python3 an unprivileged uid can run (this course's may sit under a 0700 /root)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate) and shutil.which("setpriv"):
            ok = subprocess.run(["setpriv", "--reuid", "4321", "--regid", "4321", "--clear-groups", candidate, "-c", "pass"],
                                capture_output=True)
            if ok.returncode == 0:
                return candidate
    return None


@pytest.mark.skipif(not ROOT, reason="drops to an unprivileged uid to play a non-root grader")
def test_unprivileged_grader():
    """A grader that is not root: bwrap's own user namespace, and RLIMIT_NPROC still stops a fork bomb."""
    python = _system_python()
    if python is None:
        pytest.skip("no python3 here that an unprivileged uid can run")
    if not os.access("/var/tmp", os.W_OK):
        pytest.skip("/var/tmp is not writable")
    base = Path(tempfile.mkdtemp(prefix="sandbox-test-", dir="/var/tmp"))  # pytest's tmp_path is 0700 root's
    try:
        _unprivileged_grader(python, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _unprivileged_grader(python: str, base: Path) -> None:
    base.chmod(0o755)
    home = base / "grader"
    home.mkdir()
    (home / ".ssh").mkdir()
    (home / ".ssh/id_rsa").write_text("the grader's key")
    for path in (home, home / ".ssh", home / ".ssh/id_rsa"):
        os.chown(path, 4321, 4321)
    script = home / "grader.py"
    script.write_text(textwrap.dedent(f"""
        import importlib.util, json, os, sys, subprocess, time
        from pathlib import Path
        spec = importlib.util.spec_from_file_location("sandbox", {str(Path(sandbox_module.__file__))!r})
        sb = importlib.util.module_from_spec(spec); sys.modules["sandbox"] = sb; spec.loader.exec_module(sb)
        ok, why = sb.available()
        box = sb.Sandbox(writable=Path({str(home)!r}) / "work" / "alice", hidden=(Path({str(home)!r}) / "work",),
                         max_processes=32)
        bomb = ("import os, socket\\nsocket.create_server(('127.0.0.1', 0))\\n"
                "try:\\n    seen = open({str(home / ".ssh/id_rsa")!r}).read()\\nexcept OSError:\\n    seen = 'hidden'\\n"
                "print(os.getuid(), seen.replace(' ', '_'), flush=True)\\nwhile True:\\n    os.fork()")
        start = time.perf_counter()
        done = subprocess.run(box.argv([sys.executable, "-c", bomb]), preexec_fn=box.preexec, capture_output=True,
                              text=True, timeout=60)
        print(json.dumps(dict(ok=ok, why=why, rc=done.returncode, seconds=time.perf_counter() - start,
                              uid=done.stdout.split()[0] if done.stdout.split() else None,
                              key=done.stdout.split()[1] if len(done.stdout.split()) > 1 else None,
                              status=sb.status_of(done.returncode, done.stdout + done.stderr), err=done.stderr[-500:])))
    """))
    done = subprocess.run(["setpriv", "--reuid", "4321", "--regid", "4321", "--clear-groups", "env", "-i",
                           "PATH=/usr/bin:/bin", f"HOME={home}", python, str(script)],
                          capture_output=True, text=True, timeout=120, cwd=home)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.splitlines()[-1])
    if not got["ok"]:
        pytest.skip(f"unprivileged bubblewrap does not work here: {got['why']}")
    assert got["uid"] == "4321", got
    assert got["key"] == "hidden", got  # the grader's home is masked: the sandbox runs as the grader's uid
    assert got["status"] == "process limit", got
    assert got["seconds"] < 30


def test_status_of():
    assert status_of(0, "MemoryError") is None
    assert status_of(1, "Traceback …\nMemoryError\n") == "memory limit"
    assert status_of(1, "RuntimeError: [enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory") \
        == "memory limit"
    assert status_of(1, "BlockingIOError: [Errno 11] Resource temporarily unavailable") == "process limit"
    assert status_of(1, "RuntimeError: can't start new thread") == "process limit"
    assert status_of(137, "") == "memory limit"  # a SIGKILL nobody sent: the OOM killer
    assert status_of(1, "MemoryError\n…\nBlockingIOError: [Errno 11]") == "process limit"  # the last one wins
    assert status_of(1, "ZeroDivisionError: division by zero") is None


def test_available_is_cached():
    assert available() == (True, "")
    assert available.cache_info().hits >= 1
