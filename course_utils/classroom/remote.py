"""Run a student's exercise function in another process, so the course's check runs out of the student's reach.

A check that runs inside the student's kernel can be forged: patch `torch.allclose`, print a fake
"✅ passed", replace `report`. The grader therefore pickles each exercise function by value
(`dump_functions`, in the student's kernel) and runs the course's *unmodified* check in a trusted
**checker** process, against a proxy; the function itself runs in an untrusted **worker** process,
`python -m course_utils.classroom.remote FUNCTIONS_PKL`, which the caller sandboxes (`prefix`):

    with Worker("functions.pkl", prefix=bwrap_argv, timeout=60) as worker:
        passed = check_fgsm(worker.function("fgsm"))

The one security rule: the checker never executes or unpickles anything the worker produced.
Checker → worker messages are pickles of the checker's own objects; worker → checker messages are
read only with `torch.load(..., weights_only=True)` (tensors, numbers, str, bool, None, lists,
tuples, dicts), and anything else is an error. Frames are an 8-byte length and the payload.

So that checks which look at side effects still work, a call mirrors its arguments:

- every `nn.Module`, `torch.optim.Optimizer` and `torch.Tensor` among the arguments (also inside
  lists, tuples and dicts) gets a handle; they travel in ONE pickle, so shared references survive
  (the optimizer's parameters are the model's parameters in the worker too);
- after the call, and around every callback, the worker's copies send their state back and the
  checker applies it to its originals: a module's parameters and buffers, each parameter's `.grad`
  (None stays None) and each submodule's `training` flag; an optimizer's `state_dict()`; a tensor's
  values (when shape and dtype still match). The torch CPU RNG state and the grad mode travel too;
- a callable that is not a Module (the `attack` of 04's check, the `objective` of 06's) stays in
  the checker: the worker gets a stub that calls back, and the checker runs the real callable on its
  own originals (`m is model` holds). Gradients flow back through a callback (first order), so the
  student can differentiate an objective that runs in the checker;
- the return value comes back with the worker's copies of handles replaced by the originals
  (numpy arrays and scalars as lists and Python numbers; anything not plain data is an error).

Not mirrored: other arguments are copies (a list the function appends to stays as it was here),
nor attributes, `requires_grad` flags, a tensor's `.grad` unless it is a module's parameter, or
globals; a module whose parameters or buffers were added, removed or reshaped is an error; only
lists, tuples and dicts are searched for handles. A proxy cannot be called from inside a callback
of the same Worker. A student exception is
re-raised in the checker with its type name, message and the student's line: builtin exception
types as themselves (`NotImplementedError` stays `NotImplementedError`), others as a `RemoteError`
subclass of the same name. A worker that dies, exits, hangs past `timeout` (its process group is
killed) or sends a bad frame makes the call raise `WorkerFailed`; the next call starts a fresh worker.
So does one that sends what would cost the checker unbounded time or memory, though torch.load would take
it: the MAX_* limits below (frame size, values and nesting of a message, tensor elements, pickle opcodes,
callbacks and the autograd graphs they keep per call), and a Worker's `total_timeout`, after which every call
fails at once.
A sandbox that starts a new session (bwrap `--new-session`) leaves that process group: give it
`--die-with-parent` (and `--unshare-pid`) so that killing it ends everything inside.
"""
from __future__ import annotations

import builtins
import io
import linecache
import os
import pickle
import pickletools
import re
import select
import signal
import struct
import subprocess
import sys
import sysconfig
import time
import traceback
import warnings
from typing import Callable, Sequence

import cloudpickle

# torch is imported inside the functions that use it: the classroom package stays free of torch at import.

_HEADER = struct.Struct(">Q")  # frame length, then the payload
MAX_FRAME = 16 << 20  # a worker announcing more is broken or hostile: never allocate it (the course's messages are KBs)
# What one worker message may cost the checker. Memo references let a few bytes decode into a shared structure whose
# tree walk (resolve, apply, an optimizer's load_state_dict, ==, print) never ends, and a stride-0 tensor of a few
# bytes into one that allocates tens of GB once it is used or copied; decoding itself is pure Python.
MAX_NODES = 100_000  # values (containers, atoms, tensors) a tree walk of one message visits, repeats included
MAX_DEPTH = 100  # nesting of one message: walks recurse
MAX_OPS = 10 * MAX_NODES  # pickle opcodes of one message: what decoding it costs
MAX_TENSOR_ELEMENTS = 10_000_000  # elements of one tensor, by its shape (what using or copying it allocates)
MAX_MESSAGE_ELEMENTS = 50_000_000  # elements of all the tensors of one message, repeats included
MAX_CALLBACKS = 10_000  # callbacks in one call: each may keep an autograd graph until the call ends
MAX_RETAINED_ELEMENTS = MAX_MESSAGE_ELEMENTS  # elements of the results and inputs of the graphs one call keeps
_HANDLE = "__remote_handle__"  # worker → checker: {_HANDLE: [i, k]} is handle i (k < 0), or its k-th parameter
_SOURCES = "__sources__"  # optional key of the functions file: {name: source of its cell}, for the student's line
_CONN = None  # the worker's connection, while this process is a worker


class RemoteError(Exception):
    """Raised by a proxy call: the base of re-raised student exceptions of non-builtin types (a subclass
    named like the original) and of `WorkerFailed`. `remote_traceback` holds the worker's traceback text."""

    remote_traceback = ""


class WorkerFailed(RemoteError):
    """The worker died, exited, timed out, or sent something it may not: the call has no result."""


class _Timeout(Exception):
    pass


class _Refused(ValueError):
    """A worker frame that the checker will not decode or use: its message says what the worker sent."""


# ---------------------------------------------------------------- frames (both sides)

def _wait(fd: int, event: int, deadline: float | None) -> None:
    """Return once `fd` is ready for `event` (or has hung up); raise `_Timeout` at the deadline.
    poll, not select: select fails on descriptors above 1023, which a busy grader may well have."""
    if deadline is None:  # the worker may block: the checker holds the clock
        return
    poller = select.poll()
    poller.register(fd, event)
    left = deadline - time.monotonic()
    if left <= 0 or not poller.poll(left * 1000):
        raise _Timeout()


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks = []
    while n:
        _wait(fd, select.POLLIN, deadline)
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("the other end closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int, deadline: float | None = None) -> bytes:
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    if size > MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes announced (more than {MAX_FRAME})")
    return _read_exact(fd, size, deadline)


def _write_frame(fd: int, payload: bytes, deadline: float | None = None) -> None:
    view = memoryview(_HEADER.pack(len(payload)) + payload)
    while view:
        _wait(fd, select.POLLOUT, deadline)  # with a non-blocking fd: a worker that stops reading cannot block us
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            pass


def _plain(frame: bytes):
    """The only way the checker reads the worker's bytes: plain data or an exception, never code. What torch's
    weights-only unpickler accepts is not enough: some of it costs unbounded time or memory while decoding, so the
    archive and its pickle are checked first, and the decoded value before anyone walks it."""
    import torch

    _scan(_pickle_of(frame))
    with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise a worker could make at will
        warnings.simplefilter("ignore")
        value = torch.load(io.BytesIO(frame), weights_only=True, map_location="cpu")
    _vet(value)
    return value


def _refuse_unless(ok: bool, what: str) -> None:
    if not ok:
        raise _Refused(what)


_ZIP_END = struct.Struct("<4s4xHHII2s")  # signature, entries on disk and in all, directory size and offset, comment
_ZIP64_LOCATOR = struct.Struct("<4sIQI")  # signature, disk, where the zip64 end record is, disks
_ZIP64_END = struct.Struct("<4sQ28xQQ")  # signature, its size after this field, directory size and offset


def _pickle_of(frame: bytes) -> bytes:
    """The pickle of a torch.save archive, once nothing in the archive can grow while torch reads it: torch.load
    inflates compressed records (a zip bomb) and reads anything that is not a zip in its legacy format."""
    import zipfile

    import torch

    not_plain = "something that is not plain data (not an archive of torch.save"
    _refuse_unless(frame[:4] == b"PK\x03\x04" and len(frame) >= 128 and _one_directory(frame), not_plain + ")")
    try:
        records = zipfile.ZipFile(io.BytesIO(frame)).infolist()
    except (zipfile.BadZipFile, ValueError, EOFError) as err:
        raise _Refused(f"{not_plain}: {err})"[:300]) from None
    names = [r.filename.lower() for r in records]  # lower: miniz may look names up without case
    _refuse_unless(len(set(names)) == len(names), not_plain + ": records named twice)")
    _refuse_unless(all(r.compress_type == zipfile.ZIP_STORED and r.file_size == r.compress_size for r in records)
                   and sum(r.file_size for r in records) <= len(frame), not_plain + ": compressed records)")
    return torch._C.PyTorchFileReader(io.BytesIO(frame)).get_record("data.pkl")  # torch's own reader: its bytes


def _one_directory(frame: bytes) -> bool:
    """Whether the zip's central directory lies right before its end records, as torch.save writes it: its end
    record last (no comment), then the zip64 end record and locator if any, agreeing. Then Python's zipfile (in
    `_pickle_of`) and miniz (in torch), which look for them differently, read the same directory."""
    end = len(frame) - _ZIP_END.size
    signature, _, _, size, offset, comment = _ZIP_END.unpack_from(frame, end)
    if signature != b"PK\x05\x06" or comment != b"\0\0":
        return False
    locator = end - _ZIP64_LOCATOR.size
    if frame[locator:locator + 4] != b"PK\x06\x07":
        return offset + size == end
    record = locator - _ZIP64_END.size  # where Python looks; miniz goes where the locator says
    _, _, located, _ = _ZIP64_LOCATOR.unpack_from(frame, locator)
    signature, rest, size64, offset64 = _ZIP64_END.unpack_from(frame, record)
    return (located == record and signature == b"PK\x06\x06" and rest == _ZIP64_END.size - 12
            and (size64, offset64) == (size, offset) and offset + size == record)


# The globals a frame may name: what torch.save writes for plain tensors, and a few harmless value types. torch's
# weights-only list is longer, and some of it allocates while decoding: _rebuild_device_tensor_from_cpu_tensor
# materialises a stride-0 tensor, bytearray(n) and UntypedStorage(n) take n bytes; the grader's process may add more.
_GLOBALS = {("torch._utils", "_rebuild_tensor_v2"), ("collections", "OrderedDict"), ("torch", "Size"),
            ("torch", "device"), ("builtins", "complex"), ("__builtin__", "complex")}
_STORAGE = re.compile(r"(?!Typed|Untyped)[A-Z]\w*Storage")  # the legacy typed storages, which torch.save names
# The tags of atoms on `_scan`'s simulated stack, by opcode: the hashable values that cost little to hash.
_ATOMS = {"BININT": "int", "BININT1": "int", "BININT2": "int", "LONG1": "int", "BINUNICODE": "str",
          "SHORT_BINSTRING": "str", "NONE": "atom", "NEWTRUE": "atom", "NEWFALSE": "atom", "BINFLOAT": "atom"}
_ATOM_TAGS = frozenset(_ATOMS.values())


def _allowed_global(module: str, name: str) -> bool:
    import torch

    if (module, name) in _GLOBALS:
        return True
    # vars, not getattr: torch's module __getattr__ would import submodules for unknown names
    return module == "torch" and (_STORAGE.fullmatch(name) is not None
                                  or isinstance(vars(torch).get(name), torch.dtype))


def _scan(pickled: bytes) -> None:
    """Refuse a pickle that would cost unbounded time or memory while torch decodes it, by simulating the
    unpickler's stack with tags instead of values (a tuple's tag is the tuple of its items' tags, shared as the
    items are: linear). Besides the globals, it refuses what hashes a structure while decoding (a memo-shared tuple
    of 2^64 leaves takes forever to hash, uninterruptibly): only atoms may be dict keys or storage keys."""

    def atom(tag) -> bool:  # not `tag in _ATOM_TAGS`: that would hash a tuple of tags, which is the danger
        return type(tag) is str and tag in _ATOM_TAGS

    stack, marks, memo = [], [], {}
    not_plain = "something that is not plain data ({})".format

    def pop_mark() -> list:
        nonlocal stack
        items, stack = stack, marks.pop()
        return items

    try:
        for count, (op, arg, _) in enumerate(pickletools.genops(pickled)):
            _refuse_unless(count < MAX_OPS, f"a message of more than {MAX_OPS:,} pickle opcodes")
            name = op.name
            if name in _ATOMS:
                stack.append(_ATOMS[name])
            elif name == "GLOBAL":
                module, _, attr = arg.partition(" ")
                _refuse_unless(_allowed_global(module, attr), not_plain(f"it names {module}.{attr}"))
                stack.append(("global", module, attr))
            elif name in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"):
                stack.append(name)
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name == "MARK":
                marks.append(stack)
                stack = []
            elif name == "TUPLE":
                items = tuple(pop_mark())  # first: it rebinds `stack`
                stack.append(items)
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                _refuse_unless(len(stack) >= n, not_plain("a malformed pickle"))
                stack[-n:] = [tuple(stack[-n:])]
            elif name == "APPEND":
                stack.pop()
            elif name == "APPENDS":
                pop_mark()
            elif name == "SETITEM":
                stack.pop()
                _refuse_unless(atom(stack.pop()), not_plain("a dict key that is not a string or a number"))
            elif name == "SETITEMS":
                _refuse_unless(all(atom(k) for k in pop_mark()[::2]),
                               not_plain("a dict key that is not a string or a number"))
            elif name == "REDUCE":
                args = stack.pop()
                _refuse_unless(stack[-1] != ("global", "collections", "OrderedDict") or args == (),
                               not_plain("an OrderedDict made from items"))  # it would hash their keys
                stack[-1] = "object"
            elif name == "NEWOBJ":
                del stack[-2:]
                stack.append("object")
            elif name == "BINPERSID":
                # ("storage", storage type, key, location, numel): torch hashes the key and multiplies numel by
                # the element size (a string would be repeated). Each tag is compared with a string, never with
                # another tag: comparing two tuples of tags walks them.
                pid = stack.pop()
                _refuse_unless(type(pid) is tuple and len(pid) == 5 and pid[0] == "str" and atom(pid[2])
                               and pid[3] == "str" and pid[4] == "int", not_plain("a malformed storage reference"))
                stack.append("storage")
            elif name in ("BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
            elif name in ("BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif name == "STOP":
                return
            elif name != "PROTO":  # BUILD too: torch.save writes none for plain data
                raise _Refused(not_plain(f"pickle opcode {name}"))
    except _Refused:
        raise
    except Exception as err:  # genops' errors, a stack or memo that is not there
        raise _Refused(not_plain(f"a malformed pickle: {type(err).__name__}: {err}"[:300])) from None
    raise _Refused(not_plain("a malformed pickle: no STOP"))


def _vet(value) -> None:
    """Refuse a decoded message that is cheap to send but costly to use: more values than MAX_NODES when walked as a
    tree (so a structure shared by memo references counts each time it is met), deeper than MAX_DEPTH, a tensor that
    is not a plain dense CPU tensor, or more tensor elements than MAX_TENSOR_ELEMENTS and MAX_MESSAGE_ELEMENTS."""
    import torch

    nodes, elements, todo = 1, 0, [(value, 0)]
    while todo:
        v, depth = todo.pop()
        if isinstance(v, (list, tuple, set, dict)):
            items = [x for item in v.items() for x in item] if isinstance(v, dict) else list(v)
            nodes += len(items)  # counted before they are stacked: the walk's own work stays within the budget
            _refuse_unless(nodes <= MAX_NODES, f"more than {MAX_NODES:,} values in one message")
            _refuse_unless(depth < MAX_DEPTH or not items, f"values nested more than {MAX_DEPTH} deep")
            todo.extend((x, depth + 1) for x in items)
        elif isinstance(v, torch.Tensor):
            elements += _tensor_elements(v)
            _refuse_unless(elements <= MAX_MESSAGE_ELEMENTS,
                           f"tensors of more than {MAX_MESSAGE_ELEMENTS:,} elements in all in one message")
        else:
            _refuse_unless(v is None or type(v) in (bool, int, float, complex, str)
                           or isinstance(v, (torch.device, torch.dtype)),
                           f"something that is not plain data (a {type(v).__name__})")


def _tensor_elements(t) -> int:
    """The elements of `t` by its shape (numel can overflow), if it is a plain dense CPU tensor of at most
    MAX_TENSOR_ELEMENTS: a stride-0 view of one number costs as much as its shape once it is copied."""
    import math

    import torch

    _refuse_unless(type(t) is torch.Tensor and t.layout is torch.strided and t.device.type == "cpu"
                   and not t.is_quantized and not getattr(t, "_backward_hooks", None),
                   "a tensor that is not a plain dense CPU tensor")
    n = math.prod(t.shape)
    _refuse_unless(n <= MAX_TENSOR_ELEMENTS,
                   f"a tensor of {n:,} elements (shape {tuple(t.shape)}; at most {MAX_TENSOR_ELEMENTS:,} are accepted)")
    return n


# ---------------------------------------------------------------- state of handle objects (both sides)

def _state(obj):
    import torch
    from torch import nn

    if isinstance(obj, nn.Module):
        return {"values": dict(obj.state_dict()),
                "grads": [None if p.grad is None else p.grad.detach() for p in obj.parameters()],
                "training": [m.training for m in obj.modules()]}
    if isinstance(obj, torch.optim.Optimizer):
        return obj.state_dict()
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    return None  # a callback


def _same(a, b) -> bool:
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and torch.equal(a, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(what)


def _copy_into(target, value, what: str) -> None:
    import torch

    _require(isinstance(value, torch.Tensor) and value.shape == target.shape and value.dtype == target.dtype,
             f"{what} changed shape or dtype")
    if not torch.equal(target, value):  # only real changes: a spurious in-place copy would break autograd graphs
        with torch.no_grad():
            target.copy_(value)


def _apply(obj, state) -> None:
    """Make `obj` look like `state` (from `_state` on the other side; untrusted data in the checker)."""
    import torch
    from torch import nn

    if isinstance(obj, nn.Module):
        _require(type(state) is dict and state.keys() == {"values", "grads", "training"}, "malformed module state")
        current, values = obj.state_dict(), state["values"]
        _require(type(values) is dict and values.keys() == current.keys(),
                 "the model's parameters or buffers were added, removed or renamed")
        for key, tensor in current.items():
            _copy_into(tensor, values[key], f"the model's {key}")
        params, grads = list(obj.parameters()), state["grads"]
        _require(type(grads) is list and len(grads) == len(params), "malformed gradients")
        for p, g in zip(params, grads):
            if g is None:
                p.grad = None
            elif p.grad is None or not _same(p.grad, g):
                _require(isinstance(g, torch.Tensor), "malformed gradient")
                p.grad = g  # torch checks its shape, dtype and device
        modules, flags = list(obj.modules()), state["training"]
        _require(type(flags) is list and len(flags) == len(modules) and all(type(f) is bool for f in flags),
                 "malformed train/eval flags")
        for m, flag in zip(modules, flags):
            m.training = flag
    elif isinstance(obj, torch.optim.Optimizer):
        _require(type(state) is dict, "malformed optimizer state")
        if not _same(obj.state_dict(), state):
            obj.load_state_dict(state)  # torch checks that the groups match
    elif isinstance(obj, torch.Tensor):
        if isinstance(state, torch.Tensor) and state.shape == obj.shape and state.dtype == obj.dtype:
            _copy_into(obj, state, "a tensor")


def _handle_refs(objects: Sequence) -> dict:
    """id → (object, [i, k]) for every handle object and every parameter of a handle module. The object
    is kept so that a recycled id can never be mistaken for a handle."""
    from torch import nn

    refs = {}
    for i, obj in enumerate(objects):
        if isinstance(obj, nn.Module):
            for k, p in enumerate(obj.parameters()):
                refs.setdefault(id(p), (p, [i, k]))
        refs[id(obj)] = (obj, [i, -1])
    return refs


# ---------------------------------------------------------------- checker side

class _CallbackRef:
    """Stands for a checker callable in the call's pickle; in the worker it is the stub that calls back."""

    def __init__(self, call: int, index: int):
        self.call, self.index = call, index

    def __call__(self, *args, **kwargs):
        if _CONN is None or _CONN.call != self.call:
            raise RuntimeError("this callback belonged to an earlier call of the check")
        return _CONN.callback(self.index, args, kwargs)


class _Table:
    """The checker's originals for one call, by handle index."""

    def __init__(self, call: int):
        self.call, self.objects, self.shipped, self.index = call, [], [], {}

    def ship(self, value):
        """`value` with callables replaced by callback refs; handle objects registered (and left in place)."""
        import torch

        if type(value) in (list, tuple):
            return type(value)(self.ship(v) for v in value)
        if type(value) is dict:
            return {k: self.ship(v) for k, v in value.items()}
        is_handle = isinstance(value, (torch.nn.Module, torch.optim.Optimizer, torch.Tensor))
        if not is_handle and not (callable(value) and not isinstance(value, type)):
            return value  # plain data, pickled as it is
        if id(value) not in self.index:
            self.index[id(value)] = len(self.objects)
            self.objects.append(value)
            self.shipped.append(value if is_handle else _CallbackRef(self.call, len(self.shipped)))
        return self.shipped[self.index[id(value)]]

    def states(self) -> list:
        return [None if isinstance(s, _CallbackRef) else _state(o) for o, s in zip(self.objects, self.shipped)]

    def apply(self, states) -> None:
        _require(type(states) is list and len(states) == len(self.objects), "malformed states")
        for obj, shipped, state in zip(self.objects, self.shipped, states):
            if not isinstance(shipped, _CallbackRef):
                _apply(obj, state)

    def resolve(self, value, aliases=None, memo=None):
        """Worker data with handle refs replaced by the checker's originals (or their grad aliases). A list, tuple or
        dict met again (memo references share them) is resolved once, into the same object: the walk stays linear in
        the decoded objects (`_vet` has bounded the message's tree)."""
        if type(value) not in (list, tuple, dict):
            return value
        memo = {} if memo is None else memo
        if id(value) not in memo:  # the message holds `value` until the walk ends: its id cannot be recycled
            memo[id(value)] = self._resolve(value, aliases, memo)
        return memo[id(value)]

    def _resolve(self, value, aliases, memo):
        import torch

        if type(value) is dict and value.keys() == {_HANDLE}:
            ref = value[_HANDLE]
            _require(type(ref) is list and len(ref) == 2 and all(type(v) is int for v in ref)
                     and 0 <= ref[0] < len(self.objects), "a bad handle")
            obj = self.objects[ref[0]]
            if ref[1] >= 0:
                params = list(obj.parameters()) if isinstance(obj, torch.nn.Module) else []
                _require(ref[1] < len(params), "a bad handle")
                obj = params[ref[1]]
            return (aliases or {}).get(id(obj), obj)
        if type(value) in (list, tuple):
            return type(value)(self.resolve(v, aliases, memo) for v in value)
        return {k: self.resolve(v, aliases, memo) for k, v in value.items()}

    def dumps(self, message) -> bytes:
        """Pickle a reply; the checker's handle objects in it become the worker's copies."""
        buf = io.BytesIO()
        _ReplyPickler(buf, _handle_refs(self.objects)).dump(message)
        return buf.getvalue()


class _ReplyPickler(cloudpickle.CloudPickler):
    def __init__(self, file, refs: dict):
        self.refs = refs
        super().__init__(file)

    def persistent_id(self, obj):  # the C pickler looks this method up on the class
        entry = self.refs.get(id(obj))
        return tuple(entry[1]) if entry is not None and entry[0] is obj else None


def _text(value, default: str, limit: int = 2000) -> str:
    return value[:limit] if type(value) is str else default


_LINECACHE_KEPT = 32  # the worker's file names with a linecache entry, the newest kept: each raise makes one
_linecache_names: dict = {}  # those names, oldest first


def _cache_line(filename: str, lineno: int, line: str) -> None:
    """Put `line` in linecache, for tracebacks, without letting a worker grow it: every call may raise from a new
    file name (the worker names it) at a line up to 100,000, and linecache is never emptied by itself."""
    linecache.cache[filename] = (len(line), None, ["\n"] * (lineno - 1) + [line + "\n"], filename)
    _linecache_names.pop(filename, None)
    _linecache_names[filename] = None
    while len(_linecache_names) > _LINECACHE_KEPT:
        oldest = next(iter(_linecache_names))
        del _linecache_names[oldest]
        linecache.cache.pop(oldest, None)


def _raise_at(err: Exception, filename: str, lineno: int, function: str, line: str):
    """Raise `err` from a frame at the student's line, so a traceback's last entry (what `report` prints)
    names the student's line instead of this module's `raise`."""
    err = err.with_traceback(None)  # else the traceback would still end at the `raise` that made it
    filename = f"<worker> {filename}"  # never shadow a real file in linecache
    lineno = min(max(lineno, 1), 100_000)
    _cache_line(filename, lineno, line)
    name = function if function.isidentifier() else "<student code>"
    code = compile("raise __remote_error__", filename, "exec").replace(co_firstlineno=lineno, co_name=name)
    exec(code, {"__remote_error__": err})


def _rebuild(info) -> tuple[Exception, tuple]:
    """The student's exception, from its description: a builtin type as itself, else a `RemoteError` subclass."""
    info = info if type(info) is dict else {}
    name = _text(info.get("type"), "RemoteError", 100)
    message = _text(info.get("message"), "")
    cls = getattr(builtins, name, None) if info.get("module") == "builtins" else None
    err = None
    # Builtin Exception subclasses only: a BaseException (SystemExit, KeyboardInterrupt) would escape report().
    if isinstance(cls, type) and issubclass(cls, Exception) and cls not in (StopIteration, StopAsyncIteration):
        try:
            err = cls(message)
        except Exception:  # e.g. UnicodeDecodeError wants five arguments
            err = None
    if err is None:
        err = type(name if name.isidentifier() else "RemoteError", (RemoteError,), {"__module__": "student"})(message)
    err.remote_traceback = _text(info.get("traceback"), "", 20_000)
    lineno = info.get("lineno")
    where = (_text(info.get("filename"), "<student>", 300), lineno if type(lineno) is int else 1,
             _text(info.get("function"), "", 100), _text(info.get("line"), "", 300))
    return err, where


class Worker:
    """The checker's end: starts the worker process and hands out proxies of its functions.

    `prefix` goes before `[sys.executable, "-m", "course_utils.classroom.remote", functions_path]`
    (e.g. a bubblewrap argv). `timeout` is the worker time one proxy call may take (time spent in the
    checker's own callbacks does not count); `start_timeout` bounds starting and loading the functions;
    `total_timeout` bounds everything, from the Worker's first start: worker time, callbacks and restarts
    (each failed call restarts the worker), after which every call raises `WorkerFailed` at once.
    `stderr` is passed to Popen: the student's prints and writes to fd 1 land there; `popen` holds more
    Popen arguments (e.g. a sandbox's `preexec_fn`; the pipes, env and session are the Worker's). Not thread-safe.
    After a failed call the next call starts a fresh worker, so one exercise's crash spares the others.
    """

    def __init__(self, functions_path, prefix: Sequence[str] = (), timeout: float = 60.0, env: dict | None = None,
                 start_timeout: float = 120.0, stderr=None, popen: dict | None = None, total_timeout: float = 600.0):
        self.argv = [*prefix, sys.executable, "-m", __name__, os.fspath(functions_path)]
        self.timeout, self.start_timeout, self.env, self.stderr = timeout, start_timeout, env, stderr
        self.total_timeout = total_timeout
        self.popen = dict(popen or {})
        self._proc, self._ready, self._busy, self._closed, self._calls = None, False, False, False, 0
        self._end = None  # when total_timeout runs out (time.monotonic()), from the first start

    def __enter__(self) -> "Worker":
        self._closed = False
        self._start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def function(self, name: str) -> Callable:
        """A callable that runs the worker's function `name`: a drop-in argument for a course check."""
        def proxy(*args, **kwargs):
            return self._call(name, args, kwargs)
        proxy.__name__ = proxy.__qualname__ = name
        return proxy

    def close(self) -> None:
        """Let the worker exit (end of input), then kill its process group, stragglers included."""
        self._closed = True
        self._stop(wait=5, gently=True)

    # -- process

    def _start(self) -> None:
        self._stop()
        if self._end is None:
            self._end = time.monotonic() + self.total_timeout
        # Its own session, so that one killpg ends the worker and whatever it started.
        self._proc = subprocess.Popen(self.argv, **{**self.popen, "stdin": subprocess.PIPE, "stdout": subprocess.PIPE,
                                                    "stderr": self.stderr, "env": self.env, "bufsize": 0,
                                                    "start_new_session": True})
        os.set_blocking(self._proc.stdin.fileno(), False)  # writes wait in poll, with a deadline
        self._ready = False

    def _stop(self, wait: float = 0.0, gently: bool = False) -> int | None:
        """Kill the worker's process group, after `wait` seconds for the worker to exit by itself (after the end
        of its input if `gently`); return its exit code if it had exited by then."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        try:
            if gently:
                proc.stdin.close()
            proc.wait(timeout=wait)
        except (OSError, subprocess.TimeoutExpired):
            pass
        code = proc.returncode
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for pipe in (proc.stdin, proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        return code

    def _left(self, seconds: float) -> float:
        """The deadline `seconds` from now, or sooner where the Worker's total time runs out."""
        return min(time.monotonic() + seconds, self._end)

    def _receive(self, deadline: float, kinds: tuple) -> dict:
        frame = _read_frame(self._proc.stdout.fileno(), deadline)
        try:
            message = _plain(frame)
        except _Refused as err:
            raise WorkerFailed(f"the worker sent {err}"[:500]) from None
        except Exception as err:
            why = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(err))  # torch's long message has one useful line
            raise WorkerFailed("the worker sent something that is not plain data ("
                               + (why.group(1) if why else f"{type(err).__name__}: {err}")[:200] + ")") from None
        if time.monotonic() > deadline:  # decoding takes time too: a frame that arrived in time may end too late
            raise _Timeout()
        _require(type(message) is dict and message.get("kind") in kinds,
                 f"an unexpected message (expected {' or '.join(kinds)})")
        return message

    # -- one call

    def _call(self, name: str, args: tuple, kwargs: dict):
        if self._busy:
            raise RemoteError("a proxy was called while another call of the same worker was running "
                              "(for example from a callback): not supported")
        if self._closed:
            raise WorkerFailed("the worker was closed")
        self._busy, settled = True, False
        try:
            kind, value = self._run(name, args, kwargs)
            settled = True
        except WorkerFailed as failed:
            settled, kind, value = True, "failed", failed
        finally:
            self._busy = False
            if not settled:  # interrupted mid-protocol (by the checker's own error): the worker cannot be reused
                self._stop()
        if kind == "return":
            return value
        if kind == "failed":
            _raise_at(value, "<worker>", 1, name, f"{name}(...)  # run in the grader's worker process")
        err, where = value
        _raise_at(err, *where)

    def _run(self, name: str, args: tuple, kwargs: dict):
        import torch

        if self._end is not None and time.monotonic() >= self._end:
            raise WorkerFailed(f"the worker used up its total time of {self.total_timeout:g} s")
        # The checker's own objects, pickled once (errors here are the checker's, not the worker's).
        self._calls += 1
        table = _Table(self._calls)
        shipped_args, shipped_kwargs = table.ship((tuple(args), dict(kwargs)))
        # ONE pickle for everything, so that shared references (optimizer → model parameters) survive.
        payload = cloudpickle.dumps({"kind": "call", "call": self._calls, "name": name, "objects": table.shipped,
                                     "states": table.states(), "args": shipped_args, "kwargs": shipped_kwargs,
                                     "rng": torch.get_rng_state(), "grad": torch.is_grad_enabled()})
        stage = "starting"
        try:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            if not self._ready:
                hello = self._receive(self._left(self.start_timeout), ("ready", "fail"))
                if hello["kind"] == "fail":
                    raise WorkerFailed("the worker could not load the notebook's functions: "
                                       + _text(hello.get("message"), "?"))
                self._ready = True
            stage = "running"
            deadline = self._left(self.timeout)
            _write_frame(self._proc.stdin.fileno(), payload, deadline)
            kept = _Kept()
            while True:
                message = self._receive(deadline, ("callback", "backward", "return", "raised", "fail"))
                kind = message["kind"]
                if kind == "fail":  # an answer (no such function, a value it cannot send): the worker may serve on
                    return "failed", WorkerFailed(_text(message.get("message"), "the worker failed"))
                if kind in ("return", "raised"):
                    table.apply(message.get("states"))
                    torch.set_rng_state(message.get("rng"))  # the student's draws advance our RNG, as in-process
                    if kind == "return":
                        return "return", table.resolve(message.get("value"))
                    return "raised", _rebuild(message.get("error"))
                started = time.monotonic()
                if kind == "callback":
                    reply = self._callback(table, kept, message)
                else:
                    reply = self._backward(kept.graphs, message)
                # The checker's own time is not the worker's, but it is the Worker's.
                deadline = min(deadline + time.monotonic() - started, self._end)
                _write_frame(self._proc.stdin.fileno(), reply, deadline)
        except WorkerFailed as err:
            self._stop()
            raise err from None
        except _Timeout:
            self._stop()
            if time.monotonic() >= self._end:
                raise WorkerFailed(f"the worker used up its total time of {self.total_timeout:g} s (its own, "
                                   "the callbacks' and restarts') and was killed") from None
            limit = self.start_timeout if stage == "starting" else self.timeout
            raise WorkerFailed(f"the worker took longer than {limit:g} s {stage} and was killed") from None
        except (EOFError, BrokenPipeError, ConnectionError):
            code = self._stop(wait=1)  # it is exiting: its exit code is worth reporting
            raise WorkerFailed(f"the worker exited (code {code}) while {stage}, without an answer") from None
        except Exception as err:  # a malformed message: bad handles, states, shapes, RNG, frame size
            self._stop()
            raise WorkerFailed(f"the worker sent an invalid message: {type(err).__name__}: {err}"[:500]) from None

    def _callback(self, table: _Table, kept: "_Kept", message: dict) -> bytes:
        """Run the checker's real callable on its originals, with the worker's state applied first."""
        import torch

        kept.count()
        index = message.get("index")
        _require(type(index) is int and 0 <= index < len(table.objects)
                 and isinstance(table.shipped[index], _CallbackRef), "a bad callback")
        table.apply(message.get("states"))
        torch.set_rng_state(message.get("rng"))
        inputs = table.resolve(message.get("inputs"))
        _require(type(inputs) is list and all(isinstance(t, torch.Tensor) and t.is_floating_point() for t in inputs),
                 "bad gradient inputs")
        aliases = {}
        for j, t in enumerate(inputs):  # a checker tensor that requires grad only in the worker: use an alias
            if not t.requires_grad:
                inputs[j] = aliases[id(t)] = t.detach().requires_grad_(True)
        args, kwargs = table.resolve(message.get("args"), aliases), table.resolve(message.get("kwargs"), aliases)
        _require(type(args) is tuple and type(kwargs) is dict and all(type(k) is str for k in kwargs), "bad arguments")
        try:
            with torch.set_grad_enabled(message.get("grad") is True):
                value = table.objects[index](*args, **kwargs)
        except Exception as err:  # the checker's callable failed: the student's code sees the exception
            reply = {"kind": "raised", "error": err, "states": table.states(), "rng": torch.get_rng_state()}
            try:
                return table.dumps(reply)
            except Exception:  # one that does not pickle: its type name and message will do
                return table.dumps({**reply, "error": RuntimeError(f"{type(err).__name__}: {err}")})
        token = None
        if inputs and isinstance(value, torch.Tensor) and value.requires_grad:
            token = kept.keep(value, inputs)
        if isinstance(value, torch.Tensor) and not value.is_leaf:
            value = value.detach()
        return table.dumps({"kind": "result", "value": value, "token": token, "states": table.states(),
                            "rng": torch.get_rng_state()})

    @staticmethod
    def _backward(graphs: list, message: dict) -> bytes:
        """The gradients of a callback's result with respect to its inputs, for the worker's backward pass."""
        import torch

        token, grad = message.get("token"), message.get("grad")
        _require(type(token) is int and 0 <= token < len(graphs), "a bad gradient request")
        value, inputs = graphs[token]
        _require(isinstance(grad, torch.Tensor) and grad.shape == value.shape, "a bad output gradient")
        try:
            grads = torch.autograd.grad(value, inputs, grad.to(value.dtype), retain_graph=True, allow_unused=True)
        except Exception as err:
            return cloudpickle.dumps({"kind": "raised", "error": RuntimeError(f"{type(err).__name__}: {err}")})
        return cloudpickle.dumps({"kind": "grads", "grads": [None if g is None else g.detach() for g in grads]})


class _Kept:
    """One call's callbacks: how many ran, and the autograd graphs kept for the student's backward passes (until
    the call ends), each holding the memory of the checker's computation; within MAX_CALLBACKS and
    MAX_RETAINED_ELEMENTS (the elements of the graphs' results and inputs, which the computation scales with)."""

    def __init__(self):
        self.calls, self.graphs, self.elements = 0, [], 0

    def count(self) -> None:
        self.calls += 1
        if self.calls > MAX_CALLBACKS:
            raise WorkerFailed(f"the worker called back more than {MAX_CALLBACKS:,} times in one call")

    def keep(self, value, inputs: list) -> int:
        """Keep (value, inputs) for `_backward`; its token."""
        self.elements += value.numel() + sum(t.numel() for t in inputs)
        if self.elements > MAX_RETAINED_ELEMENTS:
            raise WorkerFailed(f"the worker's callbacks kept autograd graphs of more than {MAX_RETAINED_ELEMENTS:,} "
                               "elements in one call")
        self.graphs.append((value, inputs))
        return len(self.graphs) - 1


# ---------------------------------------------------------------- worker side

def dump_functions(path, functions: dict) -> None:
    """Write the worker's functions file: {name: function} by value (cloudpickle), plus the source of the
    cell each was defined in (from linecache, where IPython keeps cells), so that the checker can show the
    student's line (cloudpickle replaces a function's file name by "<dynamic-code>")."""
    sources = {}
    for name, fn in functions.items():
        lines = linecache.getlines(getattr(getattr(fn, "__code__", None), "co_filename", ""))
        if lines:
            sources[name] = "".join(lines)
    with open(path, "wb") as f:
        cloudpickle.dump({**functions, _SOURCES: sources}, f)


_REMOTE_GRAD = None


def _remote_grad():
    """The autograd Function that connects a callback's result to the worker's tensors: its backward asks
    the checker for the gradients (made on first use, as torch is not imported before)."""
    global _REMOTE_GRAD
    if _REMOTE_GRAD is None:
        import torch

        class RemoteGrad(torch.autograd.Function):
            @staticmethod
            def forward(ctx, conn, token, value, *inputs):
                ctx.conn, ctx.token, ctx.call = conn, token, conn.call
                return value.clone()

            @staticmethod
            def backward(ctx, grad):
                if ctx.conn.call != ctx.call:  # the checker kept the graph only for the duration of that call
                    raise RuntimeError("cannot differentiate through a callback of an earlier call of the check")
                return (None, None, None, *ctx.conn.backward(ctx.token, grad))

        _REMOTE_GRAD = RemoteGrad
    return _REMOTE_GRAD


def _describe(err: BaseException, sources: dict) -> dict:
    """What the checker needs to re-raise a student exception (plain strings and numbers only), with the
    student's deepest line rather than torch's; `sources` maps the functions' code objects to their lines."""
    libraries = tuple({sysconfig.get_paths()[key] for key in ("stdlib", "purelib", "platlib")}
                      | {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})  # and course_utils
    frames = list(traceback.walk_tb(err.__traceback__))[1:]  # [0] is `_Connection.run` calling the function
    own = [(f, n) for f, n in frames if not os.path.abspath(f.f_code.co_filename).startswith(libraries)]
    frame, lineno = (own or frames or [(None, 1)])[-1]
    code = frame.f_code if frame is not None else None
    lines = sources.get(code) or linecache.getlines(code.co_filename if code else "")
    try:
        message = str(err)
    except Exception:
        message = "<unprintable message>"
    return {"type": str(type(err).__name__), "module": str(type(err).__module__), "message": str(message)[:2000],
            "filename": code.co_filename if code else "<student>", "lineno": int(lineno or 1),
            "function": code.co_name if code else "",
            "line": lines[lineno - 1].strip() if lineno and 0 < lineno <= len(lines) else "",
            "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__))[-20_000:]}


def _codes(code):
    """A code object and the code objects nested in it (inner functions, lambdas, comprehensions)."""
    yield code
    for const in code.co_consts:
        if hasattr(const, "co_consts"):
            yield from _codes(const)


class _Connection:
    """The worker's end: serves the checker's calls, one at a time."""

    def __init__(self, rfd: int, wfd: int, functions: dict):
        self.rfd, self.wfd, self.functions = rfd, wfd, functions
        self.call, self.copies, self.refs, self.sources = None, [], {}, {}

    def encode(self, value, memo: dict):
        """`value` as plain data: handle copies become handle refs, tensors are detached (keeping
        requires_grad), numpy arrays and scalars become (lists of) Python numbers, which unpack and convert
        as they would have in the student's kernel; the rest is left for torch.load to judge."""
        import torch

        entry = self.refs.get(id(value))
        if entry is not None and entry[0] is value:
            return {_HANDLE: entry[1]}
        if type(value) in (list, tuple):
            return type(value)(self.encode(v, memo) for v in value)
        if type(value) is dict:
            return {k: self.encode(v, memo) for k, v in value.items()}
        if isinstance(value, torch.Tensor):
            if id(value) not in memo:  # one object per tensor, so the same tensor arrives as the same object
                plain = value.detach()
                memo[id(value)] = (value, plain.requires_grad_(True) if value.requires_grad else plain)
            return memo[id(value)][1]
        if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
            return value.tolist()
        return value

    def send(self, message: dict) -> None:
        import torch

        buf = io.BytesIO()
        torch.save(message, buf)
        _plain(buf.getvalue())  # what the checker would refuse, refuse here, with a better message
        _write_frame(self.wfd, buf.getvalue())

    def receive(self):
        outer = self

        class Unpickler(pickle.Unpickler):
            def persistent_load(self, pid):  # a checker handle in a reply: our copy of it
                i, k = pid
                obj = outer.copies[i]
                return obj if k < 0 else list(obj.parameters())[k]

        return Unpickler(io.BytesIO(_read_frame(self.rfd))).load()

    def states(self) -> list:
        return [_state(c) for c in self.copies]

    def apply(self, states: list) -> None:
        for copy, state in zip(self.copies, states):
            if not isinstance(copy, _CallbackRef):
                _apply(copy, state)

    def serve(self) -> None:
        self.send({"kind": "ready", "names": sorted(k for k, v in self.functions.items() if callable(v))})
        while True:
            try:
                message = self.receive()
            except EOFError:
                return  # the checker is done
            self.run(message)

    def run(self, message: dict) -> None:
        import torch

        self.call, self.copies = message["call"], message["objects"]
        self.refs = _handle_refs(self.copies)
        self.apply(message["states"])  # what pickling leaves out, e.g. .grad
        torch.set_rng_state(message["rng"])
        torch.set_grad_enabled(message["grad"])
        fn = self.functions.get(message["name"])
        if not callable(fn):
            return self.send({"kind": "fail", "message": f"the notebook defines no function {message['name']!r}"})
        try:
            reply = {"kind": "return", "value": fn(*message["args"], **message["kwargs"])}
        except BaseException as err:  # SystemExit and KeyboardInterrupt too: they are the student's
            reply = {"kind": "raised", "error": _describe(err, self.sources)}
        finally:
            self.call = None
        reply.update(states=self.states(), rng=torch.get_rng_state())
        memo = {}
        try:
            self.send({**reply, "value": self.encode(reply.get("value"), memo)})
        except Exception as err:
            value = reply.get("value")
            why = f" (here: {err})" if isinstance(err, _Refused) else ""
            self.send({"kind": "fail", "message": f"{message['name']} returned a {type(value).__name__}, which the "
                       "grader cannot receive: only tensors, numbers, strings, bools, None, and lists, tuples and "
                       f"dicts of them, within limits{why}"[:2000]})

    def callback(self, index: int, args: tuple, kwargs: dict):
        import torch

        grad = torch.is_grad_enabled()
        inputs, seen = [], set()
        if grad:  # tensors the result may have to be differentiated with respect to
            for v in [*args, *kwargs.values()]:
                tensors = v.parameters() if isinstance(v, torch.nn.Module) else [v] if isinstance(v, torch.Tensor) else []
                for t in tensors:
                    if t.requires_grad and id(t) not in seen:
                        seen.add(id(t))
                        inputs.append(t)
        memo = {}
        message = {"kind": "callback", "index": index, "grad": grad, "args": self.encode(tuple(args), memo),
                   "kwargs": self.encode(dict(kwargs), memo), "inputs": self.encode(inputs, memo),
                   "states": self.states(), "rng": torch.get_rng_state()}
        try:
            buf = io.BytesIO()
            torch.save(message, buf)
            _plain(buf.getvalue())
        except Exception as err:
            why = f" (here: {err})" if isinstance(err, _Refused) else ""
            raise TypeError("a callback was called with arguments the grader cannot send: only the objects it "
                            "was given, tensors, numbers, strings, bools, None, and lists, tuples and dicts of them, "
                            f"within limits{why}") from None
        _write_frame(self.wfd, buf.getvalue())
        reply = self.receive()
        self.apply(reply["states"])
        torch.set_rng_state(reply["rng"])
        if reply["kind"] == "raised":
            raise reply["error"]
        value, token = reply["value"], reply["token"]
        return value if token is None else _remote_grad().apply(self, token, value, *inputs)

    def backward(self, token: int, grad) -> list:
        self.send({"kind": "backward", "token": token, "grad": grad.detach()})
        reply = self.receive()
        if reply["kind"] == "raised":
            raise reply["error"]
        return reply["grads"]


def main(argv: list[str]) -> None:
    """The worker: `python -m course_utils.classroom.remote FUNCTIONS_PKL`, serving calls on stdin/stdout."""
    global _CONN
    # Take the protocol off fd 0/1 before any student code runs (unpickling runs code too): the student's
    # prints and writes to fd 1 then land on stderr and cannot corrupt or fake a frame.
    rfd, wfd = os.dup(0), os.dup(1)  # not inherited by the student's subprocesses
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    conn = _CONN = _Connection(rfd, wfd, {})
    try:
        with open(argv[0], "rb") as f:
            functions = pickle.load(f)  # the untrusted side: this process may run the student's code
        if type(functions) is not dict:
            raise TypeError(f"the functions file holds a {type(functions).__name__}, not a dict")
    except BaseException as err:
        conn.send({"kind": "fail", "message": f"{type(err).__name__}: {err}"[:2000]})
        return
    sources = functions.pop(_SOURCES, None)
    for name, text in (sources.items() if type(sources) is dict else ()):
        code = getattr(functions.get(name), "__code__", None)
        if code is not None and type(text) is str:
            conn.sources.update(dict.fromkeys(_codes(code), text.splitlines()))
    conn.functions = functions
    conn.serve()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # now: neither the student's threads nor atexit hooks may keep the worker alive


if __name__ == "__main__":
    # Run as the importable module, not as __main__, so the pickles' references to this module's classes
    # (_CallbackRef) and its _CONN are the same objects.
    from course_utils.classroom.remote import main as worker_main

    worker_main(sys.argv[1:])
