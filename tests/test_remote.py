"""The grader's remote checks (`classroom.remote`): the course's check runs here, the student's function in a worker.

1. every exercise of every notebook, solved, passes its course check through the proxy, and the
   untouched student version fails it ("not implemented yet");
2. forgeries from inside the student's function fail the check and leave this process alone;
3. what is mirrored: in-place updates, gradients, train/eval flags, optimizer state, callbacks that
   run here on the originals (identity kept), gradients through a callback, exceptions, the RNG;
4. what a hostile worker can cost this process is bounded: frames it forges that would take unbounded time or
   memory to decode or to walk, virtual (stride-0) tensors, oversized frames, slow decoding, the Worker's total
   time, callbacks and the autograd graphs they keep, linecache.

No notebook is executed: the exercise cells are read from the notebooks and exec'd here.
"""
import ast
import contextlib
import copy
import io
import linecache
import re
import signal
import struct
import time
import traceback
import zipfile
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
import torch
from torch import nn

from course_utils import checks
from course_utils.checks import fgsm as fgsm_checks
from course_utils.checks import harness
from course_utils.classroom import remote
from course_utils.classroom.remote import RemoteError, Worker, WorkerFailed, dump_functions
from course_utils.classroom.student import strip_solutions

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
CHECKER = {"torch.allclose": torch.allclose, "torch.equal": torch.equal, "harness.report": harness.report,
           "fgsm.report": fgsm_checks.report, "fgsm_closed_form": fgsm_checks.fgsm_closed_form,
           "CheckFailed": harness.CheckFailed}


@pytest.fixture(autouse=True)
def checker_untouched():
    """Whatever a worker did, this process's torch and checks are the originals afterwards."""
    yield
    now = {"torch.allclose": torch.allclose, "torch.equal": torch.equal, "harness.report": harness.report,
           "fgsm.report": fgsm_checks.report, "fgsm_closed_form": fgsm_checks.fgsm_closed_form,
           "CheckFailed": harness.CheckFailed}
    assert all(now[k] is v for k, v in CHECKER.items()), "a worker changed the checker process"


def define(source: str, filename: str, namespace: dict) -> None:
    """Exec `source` as a notebook cell would run: in `__main__` (so cloudpickle saves its functions by value),
    with its text in linecache (where IPython keeps cells, and where `dump_functions` looks)."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)


def functions_file(tmp_path: Path, source: str, name: str = "functions") -> Path:
    namespace = {"__name__": "__main__"}
    define(source, f"<{name}>", namespace)
    path = tmp_path / f"{name}.pkl"
    dump_functions(path, {k: v for k, v in namespace.items()
                          if callable(v) and getattr(v, "__module__", "") == "__main__"})
    return path


# ---------------------------------------------------------------- 1. the course's exercises

def read_exercises(path: Path):
    """The import cells before the parameters cell (not the Colab setup), and each exercise with its check."""
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    params = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    imports = [c.source for c in cells[:params]
               if re.search(r"^\s*(import|from)\s", c.source, re.M) and not re.search(r"subprocess|pip", c.source)]
    exercises = []
    for cell, after in zip(cells, cells[1:]):
        if "exercise" not in cell.metadata.get("course", {}):
            continue
        (call,) = [node.value for node in ast.walk(ast.parse(after.source))
                   if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                   and isinstance(node.targets[0], ast.Subscript)
                   and getattr(node.targets[0].value, "id", "") == "checks"]
        exercises.append(SimpleNamespace(name=cell.metadata["course"]["exercise"], source=cell.source,
                                         check=call.func.id, functions=[a.id for a in call.args]))
    return imports, exercises


def test_every_exercise_is_read():
    found = {p.stem: [(e.name, e.check, tuple(e.functions)) for e in read_exercises(p)[1]] for p in NOTEBOOKS}
    assert len(NOTEBOOKS) == 11 and all(found.values()), found
    assert found["07_unforeseen_attacks"] == [("l2_threat", "check_l2_threat", ("l2_step", "l2_project"))]
    assert sum(map(len, found.values())) == 15


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_course_exercises_pass_solved_and_fail_untouched_through_the_proxy(path, tmp_path, capsys):
    imports, exercises = read_exercises(path)
    functions = {}
    for version, transform in (("solution", str), ("student", strip_solutions)):
        namespace = {"__name__": "__main__"}
        for k, source in enumerate(imports):
            define(source, f"<{path.stem} imports {k}>", namespace)
        for exercise in exercises:
            define(transform(exercise.source), f"<{path.stem} {version} {exercise.name}>", namespace)
            functions.update({f"{version}:{name}": namespace[name] for name in exercise.functions})
    dump_functions(tmp_path / "functions.pkl", functions)
    with Worker(tmp_path / "functions.pkl", timeout=120) as worker:  # one worker per notebook
        for exercise in exercises:
            check = getattr(checks, exercise.check)
            capsys.readouterr()
            assert check(*[worker.function(f"solution:{name}") for name in exercise.functions]) is True, \
                capsys.readouterr().out
            assert check(*[worker.function(f"student:{name}") for name in exercise.functions]) is False
            assert "not implemented yet" in capsys.readouterr().out


# ---------------------------------------------------------------- 2. forgeries

FORGERIES = '''
import io, os, struct, sys, time
import torch
import torch.nn.functional as F


def fgsm(model, x, y, eps):  # a correct one: the worker still serves it after each forgery
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return torch.clamp(x + eps * grad.sign(), 0, 1).detach()


def patches_the_checks(model, x, y, eps):
    import course_utils.checks.fgsm as fgsm_checks
    import course_utils.checks.harness as harness
    torch.allclose = lambda *a, **k: True
    torch.equal = lambda *a, **k: True
    harness.report = fgsm_checks.report = lambda name, body: True
    fgsm_checks.fgsm_closed_form = lambda model, x, y, eps: x
    return x.clone()  # in the ball and in [0, 1], made without gradients: only allclose can tell


def fake_pass_line(model, x, y, eps):
    print("✅ check_fgsm: passed — matches the closed form", flush=True)
    sys.stdout.buffer.write(b"junk")
    sys.stdout.flush()
    os.write(1, struct.pack(">Q", 8) + b"garbage!" + b"\\xff" * 100)
    return x.clone()


def junk_on_every_fd(model, x, y, eps):
    for fd in range(3, 256):
        try:
            os.write(fd, b"\\xff" * 64)
        except OSError:
            pass
    return fgsm(model, x, y, eps)


def _forge(payload):  # bypass the worker's own checks: write a frame straight onto the protocol
    from course_utils.classroom import remote
    os.write(remote._CONN.wfd, struct.pack(">Q", len(payload)) + payload)
    time.sleep(60)


class Evil:
    def __reduce__(self):  # what unpickling it would run
        return (exec, ("open(MARKER, 'w').write('pwned')",))


def forged_torch_frame(model, x, y, eps):
    buf = io.BytesIO()
    torch.save({"kind": "return", "value": Evil(), "states": [], "rng": torch.get_rng_state()}, buf)
    _forge(buf.getvalue())


def forged_pickle_frame(model, x, y, eps):
    import pickle
    _forge(pickle.dumps({"kind": "return", "value": Evil()}))


def exits(model, x, y, eps):
    os._exit(0)


def returns_custom_object(model, x, y, eps):
    class Sneaky:
        pass
    return Sneaky()


def raises_keyboard_interrupt(model, x, y, eps):
    raise KeyboardInterrupt()


def raises_system_exit(model, x, y, eps):
    sys.exit(0)


def hangs(model, x, y, eps):
    import subprocess
    child = subprocess.Popen(["sleep", "1000"])  # in the worker's process group: must die with it
    open(CHILD_PID, "w").write(str(child.pid))
    while True:
        time.sleep(1)
'''


@pytest.fixture(scope="module")
def forgery_worker(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("forgeries")
    source = FORGERIES.replace("MARKER", repr(str(tmp / "pwned"))).replace("CHILD_PID", repr(str(tmp / "child")))
    with open(tmp / "worker.err", "wb") as err, Worker(functions_file(tmp, source), timeout=30, stderr=err) as worker:
        yield worker, tmp


@pytest.mark.parametrize("name", ["patches_the_checks", "fake_pass_line", "junk_on_every_fd", "forged_torch_frame",
                                  "forged_pickle_frame", "exits", "returns_custom_object",
                                  "raises_keyboard_interrupt", "raises_system_exit"])
def test_forgery_fails_the_check_and_spares_the_checker(name, forgery_worker, capsys):
    worker, tmp = forgery_worker
    assert checks.check_fgsm(worker.function(name)) is False
    out = capsys.readouterr().out
    assert out.startswith("❌ check_fgsm") and "✅" not in out, out
    assert not (tmp / "pwned").exists()
    assert checks.check_fgsm(worker.function("fgsm")) is True  # the same Worker, a fresh process if it had to
    if name == "fake_pass_line":
        assert "✅ check_fgsm: passed".encode() in (tmp / "worker.err").read_bytes()  # the student's fd 1 is stderr
    if name.startswith("forged"):
        assert "not plain data" in out
    if name == "returns_custom_object":
        assert "returned a Sneaky, which the grader cannot receive" in out


def test_a_hanging_function_is_killed_with_its_process_group(tmp_path, capsys):
    source = FORGERIES.replace("CHILD_PID", repr(str(tmp_path / "child")))
    with Worker(functions_file(tmp_path, source), timeout=3) as worker:
        assert checks.check_fgsm(worker.function("fgsm")) is True  # started: the timeout is the call's alone
        started = time.monotonic()
        assert checks.check_fgsm(worker.function("hangs")) is False
        assert 3 <= time.monotonic() - started < 10
        assert "took longer than 3 s" in capsys.readouterr().out
        pid = int((tmp_path / "child").read_text())
        for _ in range(50):  # gone, or a zombie waiting for init
            try:
                if Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z":
                    break
            except (FileNotFoundError, IndexError):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the worker's child survived the timeout")


# ---------------------------------------------------------------- 3. mirroring

MIRROR = '''
import numpy as np
import torch
import torch.nn.functional as F


def train_step(model, optimizer, x, y):
    model.train()
    loss = F.cross_entropy(model(x.flatten(1)), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    model[1].eval()
    x.mul_(2)
    return loss.item(), x, model[0].weight


def grad_of(model):
    return [p.grad for p in model.parameters()]


def calls_back(model, x, callback):
    with torch.no_grad():
        model[0].bias.add_(1.0)  # the callback must see this...
    model.eval()
    seen = callback(model, x)
    return seen, model.training, model[0].bias.clone()  # ...and the student the callback's changes


def differentiates(model, objective, x):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(objective(model, x).sum(), x)
    objective(model, x).sum().backward()  # into the parameters' .grad, through the callback
    return g


def in_place_requires_grad(model, objective, x):
    x.requires_grad_(True)  # the checker's x does not require grad
    (g,) = torch.autograd.grad(objective(model, x).sum(), x)
    return g


def keeps_requires_grad(x):
    return x.clone().requires_grad_(True) * 2


def draws(n):
    return torch.rand(n)


def loglog_fit(d, values):  # an ndarray, which unpacks into (slope, intercept) as check_loglog_fit expects
    return np.polyfit(np.log(d), np.log(values), 1)


def numpy_values():
    return np.float32(1.5), np.arange(3), np.bool_(True)


class Oops(Exception):
    pass


def raises(kind):
    if kind == "value":
        raise ValueError("bad value")
    if kind == "custom":
        raise Oops("custom trouble")
    if kind == "exit":
        raise SystemExit(3)
    raise NotImplementedError()
'''


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    namespace = {"__name__": "__main__"}
    define(MIRROR, "<mirror>", namespace)  # the same functions, run in-process, are the reference
    with Worker(functions_file(tmp_path_factory.mktemp("mirror"), MIRROR, "mirror"), timeout=60) as worker:
        yield worker, SimpleNamespace(**namespace)


def small_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 5), nn.Sequential(nn.Tanh(), nn.Linear(5, 3)))
    model[1][1].bias.requires_grad_(False)  # a frozen parameter: its grad stays None
    return model


def test_in_place_updates_grads_flags_and_optimizer_state_come_back(mirror):
    worker, local = mirror
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.rand(6, 1, 2, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    ref_model, ref_opt = copy.deepcopy((model, opt))
    ref_x = x.clone()
    for _ in range(2):  # twice: the momentum buffers must have come back after the first
        loss, got_x, got_w = worker.function("train_step")(model, opt, x, y)
        ref_loss, _, _ = local.train_step(ref_model, ref_opt, ref_x, y)
        assert loss == pytest.approx(ref_loss, abs=1e-6)
    assert got_x is x and got_w is model[0].weight  # the worker's copies come back as the originals
    assert torch.equal(x, ref_x)
    for p, q in zip(model.parameters(), ref_model.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
        assert (p.grad is None) == (q.grad is None) and (p.grad is None or torch.allclose(p.grad, q.grad, atol=1e-6))
    assert model[1][1].bias.grad is None
    assert [m.training for m in model.modules()] == [m.training for m in ref_model.modules()] \
        == [True, True, False, False, False]
    assert torch.allclose(opt.state_dict()["state"][0]["momentum_buffer"],
                          ref_opt.state_dict()["state"][0]["momentum_buffer"], atol=1e-6)
    # and the checker's gradients reach the worker: .grad does not travel in a pickle
    grads = worker.function("grad_of")(model)
    assert [g is None for g in grads] == [False, False, False, True]
    assert torch.equal(grads[0], model[0].weight.grad)


def test_a_callback_runs_here_on_the_originals(mirror):
    worker, _ = mirror
    model, x = small_model(), torch.rand(4, 8)
    bias = model[0].bias.detach().clone()
    seen = []

    def callback(m, xb):
        seen.append((m is model, xb is x, m.training, m[0].bias.detach().clone()))
        m.train()
        with torch.no_grad():
            m[0].bias.mul_(2)
        return "ok"

    got, training_after, bias_after = worker.function("calls_back")(model, x, callback)
    assert got == "ok" and len(seen) == 1
    is_model, is_x, training, seen_bias = seen[0]
    assert is_model and is_x and training is False and torch.allclose(seen_bias, bias + 1)
    assert training_after is True and torch.allclose(bias_after, 2 * (bias + 1))
    assert torch.allclose(model[0].bias, 2 * (bias + 1)) and model.training


def test_gradients_flow_through_a_callback(mirror):
    worker, local = mirror
    model, x = small_model(), torch.rand(4, 8)
    ref_model = copy.deepcopy(model)
    calls = []

    def objective(m, xb):
        calls.append(m is model)
        return m(xb)[:, 0]

    g = worker.function("differentiates")(model, objective, x)
    ref = local.differentiates(ref_model, lambda m, xb: m(xb)[:, 0], x)
    assert calls == [True, True] and torch.allclose(g, ref, atol=1e-6)
    for p, q in zip(model.parameters(), ref_model.parameters()):
        assert (p.grad is None) == (q.grad is None) and (p.grad is None or torch.allclose(p.grad, q.grad, atol=1e-6))
    g = worker.function("in_place_requires_grad")(model, objective, x.clone())
    assert torch.allclose(g, ref, atol=1e-6)


def test_exceptions_arrive_by_type_with_the_students_line(mirror, capsys):
    worker, _ = mirror
    raises = worker.function("raises")
    with pytest.raises(ValueError, match="bad value") as info:
        raises("value")
    assert traceback.extract_tb(info.value.__traceback__)[-1].line == 'raise ValueError("bad value")'
    with pytest.raises(RemoteError, match="custom trouble") as info:
        raises("custom")
    assert type(info.value).__name__ == "Oops" and "Traceback" in info.value.remote_traceback
    with pytest.raises(RemoteError) as info:  # never a real SystemExit in the checker
        raises("exit")
    assert type(info.value).__name__ == "SystemExit"
    with pytest.raises(NotImplementedError):
        raises("todo")
    assert harness.report("check_x", lambda: raises("todo")) is False
    assert harness.report("check_y", lambda: raises("value")) is False
    out = capsys.readouterr().out
    assert "check_x: not implemented yet" in out
    assert 'your function raised ValueError: bad value (line ' in out and 'raise ValueError("bad value"))' in out
    with pytest.raises(WorkerFailed, match="no function 'nowhere'"):
        worker.function("nowhere")()


def test_rng_grad_mode_and_requires_grad_are_as_in_process(mirror):
    worker, _ = mirror
    torch.manual_seed(0)
    remote, after = worker.function("draws")(3), torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(remote, torch.rand(3)) and torch.equal(after, torch.rand(3))
    assert worker.function("keeps_requires_grad")(torch.rand(2)).requires_grad
    with torch.no_grad():
        assert not worker.function("keeps_requires_grad")(torch.rand(2)).requires_grad


def test_numpy_results_arrive_as_python_numbers(mirror):
    worker, _ = mirror
    assert worker.function("numpy_values")() == (1.5, [0, 1, 2], True)
    assert checks.check_loglog_fit(worker.function("loglog_fit")) is True


# ---------------------------------------------------------------- 4. what a hostile worker can cost the checker

HOSTILE = '''
import os, time
import torch


def forge(data, *callbacks):  # write `data` (frames the test made) straight onto the protocol, then wait
    from course_utils.classroom import remote
    os.write(remote._CONN.wfd, data)
    time.sleep(60)


def echo(value):
    return value


def returns_virtual():  # a few bytes to send, 64 GB once copied
    return torch.zeros(1).expand(10**9, 8)


def calls_back(callback, n):
    for _ in range(n):
        callback()
    return n


def differentiates(objective, x, n):
    x = x.clone().requires_grad_(True)
    for _ in range(n):
        objective(x)  # each result's graph is kept in the checker until the call ends
    return n


def raises_in(filename):
    import linecache
    source = "\\n" * 500 + "raise ValueError('deep in ' + FILE)\\n"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # the student's line
    exec(compile(source, filename, "exec"), {"FILE": filename})
'''


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    with Worker(functions_file(tmp_path_factory.mktemp("hostile"), HOSTILE, "hostile"), timeout=10) as worker:
        yield worker


@contextlib.contextmanager
def within(seconds: float):
    """Fail, instead of hanging, where the checker would loop in Python for ever (SIGALRM cannot stop a C loop)."""
    def expire(*_):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def framed(payload: bytes) -> bytes:
    return struct.pack(">Q", len(payload)) + payload


def saved(message, **options) -> bytes:
    buf = io.BytesIO()
    torch.save(message, buf, **options)
    return buf.getvalue()


def returning(value) -> dict:  # the worker's answer to a call with no handle objects
    return {"kind": "return", "value": value, "states": [], "rng": torch.get_rng_state()}


def calling_back(*args) -> dict:  # the worker's callback of the call's only object, a callable
    return {"kind": "callback", "index": 0, "grad": False, "args": args, "kwargs": {}, "inputs": [],
            "states": [None], "rng": torch.get_rng_state()}


def shared(depth: int = 64) -> list:  # a few hundred bytes once pickled (memo references), 2**64 leaves as a tree
    v = []
    for _ in range(depth):
        v = [v, v]
    return v


def rezipped(archive: bytes, compression=zipfile.ZIP_STORED, pickled: bytes | None = None) -> bytes:
    """`archive` (a torch.save one) written again by Python's zipfile, compressed or with another data.pkl."""
    source, out = zipfile.ZipFile(io.BytesIO(archive)), io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as z:
        for info in source.infolist():
            z.writestr(info.filename, pickled if pickled and info.filename.endswith("/data.pkl") else source.read(info))
    return out.getvalue()


def hashed_while_decoding(depth: int = 28) -> bytes:
    """{t: 1} with t = (t1, t1), t1 = (t2, t2)...: linear to pickle by hand, 2**depth leaves to hash as a dict key
    (at 64, for ever, in C, where no signal stops it)."""
    ops = [b"\x80\x02}", b")q\x00"]  # PROTO 2, EMPTY_DICT, EMPTY_TUPLE, BINPUT 0
    ops += [b"h" + bytes([i]) + b"\x86q" + bytes([i + 1]) for i in range(depth)]  # BINGET i, TUPLE2, BINPUT i + 1
    return rezipped(saved({}), pickled=b"".join(ops) + b"K\x01s.")  # BININT1 1, SETITEM, STOP


class Materialised:  # torch's weights-only unpickler calls this while decoding: .to(float64) of a stride-0 tensor
    def __reduce__(self):
        return (torch._utils._rebuild_device_tensor_from_cpu_tensor,
                (torch.zeros(1).expand(10**4, 10**3), torch.float64, "cpu", False))


class Allocated:  # bytearray(n): n bytes, zeroed, while decoding
    def __reduce__(self):
        return (bytearray, (10**6,))


def test_a_shared_structure_is_refused_before_it_is_walked(hostile):
    for message, callbacks in ((returning(shared()), ()), (calling_back(shared()), (lambda *a: None,))):
        started = time.monotonic()
        with within(20), pytest.raises(WorkerFailed, match="more than 100,000 values in one message"):
            hostile.function("forge")(framed(saved(message)), *callbacks)
        assert time.monotonic() - started < 10


def test_virtual_tensors_are_refused(hostile):
    with pytest.raises(WorkerFailed, match=r"sent a tensor of 8,000,000,000 elements"):
        hostile.function("forge")(framed(saved(returning(torch.zeros(1).expand(10**9, 8)))))
    assert remote.MAX_TENSOR_ELEMENTS == 10_000_000 and remote.MAX_MESSAGE_ELEMENTS == 50_000_000
    # the same check decodes every frame: callback arguments, and the elements of a whole message
    with pytest.raises(ValueError, match=r"a tensor of 8,000,000,000 elements"):
        remote._plain(saved(calling_back(torch.zeros(1).expand(10**9, 8))))
    with pytest.raises(ValueError, match=r"more than 50,000,000 elements in all"):
        remote._plain(saved(returning([torch.zeros(1).expand(9 * 10**6)] * 6)))  # each one within the limit
    # and a student who returns one (without forging anything) is told why
    with pytest.raises(WorkerFailed, match=r"returned a Tensor, which the grader cannot receive.*8,000,000,000"):
        hostile.function("returns_virtual")()
    assert torch.equal(hostile.function("echo")(torch.zeros(1).expand(10, 3)), torch.zeros(10, 3))  # small: fine


COSTLY_TO_DECODE = {
    "materialises a stride-0 tensor": lambda: saved(returning(Materialised())),
    "allocates a bytearray": lambda: saved(returning(Allocated())),
    "a sparse tensor": lambda: saved(returning(torch.sparse_coo_tensor([[0]], [1.0], (10**9,), check_invariants=True))),
    "compressed, as a zip bomb is": lambda: rezipped(saved(returning([1, 2])), zipfile.ZIP_DEFLATED),
    "in torch's legacy format": lambda: saved(returning([1, 2]), _use_new_zipfile_serialization=False),
    "hashes a shared tuple": hashed_while_decoding,
    "takes long to decode": lambda: rezipped(saved({}), pickled=b"\x80\x02](" + b"N" * 1_100_000 + b"e."),
}


@pytest.mark.parametrize("name", list(COSTLY_TO_DECODE))
def test_frames_that_cost_while_decoding_are_refused_undecoded(name, monkeypatch):
    """torch.load(weights_only=True) accepts each of these, and spends on it while decoding, before any check.

    "Undecoded" is tested directly: torch.load must never be called. (A wall-clock bound stood here; the
    opcode scan alone takes about 1.2 s for a million opcodes on a slow 2-core machine, so it failed there.)"""
    frame = COSTLY_TO_DECODE[name]()

    def decoding(*args, **kwargs):
        raise AssertionError("torch.load was called: the frame was decoded before it was refused")

    monkeypatch.setattr(torch, "load", decoding)
    with pytest.raises(ValueError, match="not plain data|a message of more than 1,000,000 pickle opcodes"):
        remote._plain(frame)


def test_a_frame_that_costs_while_decoding_fails_the_call(hostile):
    with pytest.raises(WorkerFailed, match=r"not plain data \(it names torch._utils._rebuild_device_tensor_from_cpu"):
        hostile.function("forge")(framed(saved(returning(Materialised()))))
    assert hostile.function("echo")([1, (2.5, "x"), {"k": None}]) == [1, (2.5, "x"), {"k": None}]


def test_a_frame_over_16_mib_is_refused_unread(hostile):
    started = time.monotonic()
    with pytest.raises(WorkerFailed, match=f"a frame of {(16 << 20) + 1} bytes announced"):
        hostile.function("forge")(struct.pack(">Q", (16 << 20) + 1))
    assert time.monotonic() - started < 5
    assert remote.MAX_FRAME == 16 << 20


def test_decoding_counts_against_the_deadline(tmp_path, monkeypatch):
    with Worker(functions_file(tmp_path, HOSTILE), timeout=1) as worker:
        assert worker.function("echo")(1) == 1  # started and ready: from now on, only the call's deadline
        plain = remote._plain

        def slow(frame):
            time.sleep(1.5)
            return plain(frame)

        monkeypatch.setattr(remote, "_plain", slow)
        with pytest.raises(WorkerFailed, match="took longer than 1 s running"):
            worker.function("echo")(1)


def test_a_worker_has_a_total_time_callbacks_and_restarts_included(tmp_path):
    started = time.monotonic()
    with Worker(functions_file(tmp_path, HOSTILE), timeout=30, total_timeout=3) as worker:
        with pytest.raises(WorkerFailed, match="used up its total time of 3 s"):
            worker.function("calls_back")(lambda: time.sleep(0.2), 100)  # 20 s of callbacks, none the worker's
        assert 3 <= time.monotonic() - started < 6
        again = time.monotonic()
        with pytest.raises(WorkerFailed, match="used up its total time of 3 s"):
            worker.function("echo")(1)  # at once: no restart
        assert time.monotonic() - again < 0.5


def test_callbacks_and_the_graphs_they_keep_are_bounded_per_call(hostile, monkeypatch):
    monkeypatch.setattr(remote, "MAX_CALLBACKS", 5)
    calls = []
    with pytest.raises(WorkerFailed, match="called back more than 5 times in one call"):
        hostile.function("calls_back")(lambda: calls.append(1), 10)
    assert len(calls) == 5
    assert hostile.function("calls_back")(lambda: calls.append(1), 5) == 5  # the count is per call
    monkeypatch.setattr(remote, "MAX_RETAINED_ELEMENTS", 1000)
    objective = lambda x: x * 2  # noqa: E731 - 300 elements of result and 300 of input kept per call
    assert hostile.function("differentiates")(objective, torch.rand(300), 1) == 1
    with pytest.raises(WorkerFailed, match="kept autograd graphs of more than 1,000 elements in one call"):
        hostile.function("differentiates")(objective, torch.rand(300), 2)


def test_linecache_does_not_grow_with_calls(hostile):
    raises_in = hostile.function("raises_in")
    for i in range(50):  # each from a file name of its own
        with pytest.raises(ValueError, match=f"deep in <file {i}>") as info:
            raises_in(f"<file {i}>")
    assert traceback.extract_tb(info.value.__traceback__)[-1].line == "raise ValueError('deep in ' + FILE)"
    ours = [name for name in linecache.cache if name.startswith("<worker> ")]
    assert "<worker> <file 49>" in ours and len(ours) <= 32, len(ours)
