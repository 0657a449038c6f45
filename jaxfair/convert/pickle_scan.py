"""Static checks of a pickle opcode stream, run before anything is unpickled.

Python's unpickler trusts its input. A 9-byte pickle whose PUT names memo index 2**31 makes it
allocate a 16 GB memo table; a tuple built from itself sixty times over takes 2**60 steps to
hash when it is used as a dict key; a deep chain of tuples overflows ``hash``'s C stack; a
BUILD opcode sets attributes on whatever object is below it on the stack, including the
shared objects that stand in for allow-listed globals.

``scan`` walks the opcodes with ``pickletools.genops`` (which decodes arguments but never
builds objects) and simulates the unpickler's stack with small records of what each value
is: its kind, nesting depth and hashing cost. It refuses, before a single object exists:

  * globals not in the caller's table, and calls of globals that may only be passed around;
  * memo indices other than the next free one (PUT) or an existing one (GET);
  * byte strings and frames longer than the rest of the stream;
  * dict keys and set elements other than str/bytes/numbers/None or tuples of those
    (at most ``KEY_DEPTH`` deep and ``KEY_COST`` elements in all);
  * containers nested deeper than ``MAX_DEPTH``;
  * BUILD (state setting) on anything but an object the stream itself just created with a
    constructor the caller marks ``CONSTRUCT``;
  * protocol 0/1 instance opcodes (INST, OBJ), the extension registry and out-of-band
    buffers, which no torch or NVIDIA file uses;
  * streams whose objects would take more than ``max_bytes`` (an estimate: a fixed cost per
    object plus the length of every string).
"""

from __future__ import annotations

import pickletools
from collections.abc import Mapping
from typing import BinaryIO

# Roles of allow-listed globals.
CONSTRUCT = "construct"  # called by REDUCE/NEWOBJ; returns a new object that BUILD may fill
MAPPING = "mapping"      # like CONSTRUCT, and the new object takes SETITEM(S)
CALL = "call"            # called by REDUCE; the result must not be BUILD's target
VALUE = "value"          # may only be passed as an argument, never called

MAX_DEPTH = 64    # container nesting (real checkpoints stay under 20)
KEY_DEPTH = 4     # tuple nesting inside one dict key or set element
KEY_COST = 256    # elements hashed for one key
MAX_MARKS = 256   # open MARKs at once
# Estimated bytes per value: the unpickled object (an empty list is 72 bytes with its GC
# header) plus the scanner's own record of it. Shared primitives cost the object only.
OBJECT_BYTES = 128
PRIMITIVE_BYTES = 64
# Opcodes per load (all streams of one file): a torch data.pkl takes about 35 per tensor
# (resnet34: 7,400), the tiny NVIDIA golden network 8,000; 1M is far above real files and
# bounds the scan to a few seconds.
MAX_OPS = 1_000_000
# Objects one stream may build (estimated bytes): a fixed allowance plus 32 per byte of the
# stream. Strings are charged their length, so payload-heavy NVIDIA pickles pass easily;
# real torch data.pkl files estimate at about 40 bytes per byte, far under 16 MiB; a stream
# of one-byte container opcodes (128 each) is refused after about 175,000 of them.
SCAN_BASE_BYTES = 16 << 20
SCAN_BYTES_PER_BYTE = 32


def objects_allowed(stream_bytes: int) -> int:
    """Estimated object bytes a stream of ``stream_bytes`` bytes may build."""
    return SCAN_BASE_BYTES + SCAN_BYTES_PER_BYTE * stream_bytes

_PRIMITIVES = frozenset({
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "NONE", "NEWTRUE", "NEWFALSE", "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE",
    "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES",
    "BINBYTES8"})
_REFUSED = {"INST": "protocol 0/1 instance creation (INST)",
            "OBJ": "protocol 0/1 instance creation (OBJ)",
            "EXT1": "the copyreg extension registry", "EXT2": "the copyreg extension registry",
            "EXT4": "the copyreg extension registry",
            "NEXT_BUFFER": "out-of-band buffers", "READONLY_BUFFER": "out-of-band buffers"}


class UnsafePickle(ValueError):
    """The stream is malformed or asks for something the reader refuses."""


class _Value:
    """What the unpickler would hold at one stack slot (never the object itself)."""

    __slots__ = ("kind", "depth", "cost", "keysafe", "text", "role", "fresh")

    def __init__(self, kind: str, depth: int = 0, cost: int = 1, keysafe: bool = False,
                 text: str | None = None, role: str | None = None, fresh: bool = False):
        self.kind, self.depth, self.cost, self.keysafe = kind, depth, cost, keysafe
        self.text, self.role, self.fresh = text, role, fresh


def _prim(arg) -> _Value:
    text = arg if isinstance(arg, str) and len(arg) <= 256 else None
    return _Value("prim", keysafe=True, text=text)


_PRIM = _Value("prim", keysafe=True)  # shared: primitives are never modified


def _tuple(items: list[_Value]) -> _Value:
    depth = 1 + max((v.depth for v in items), default=0)
    cost = min(1 + sum(v.cost for v in items), KEY_COST + 1)
    keysafe = all(v.keysafe for v in items) and depth <= KEY_DEPTH and cost <= KEY_COST
    return _Value("tuple", depth, cost, keysafe)


_EMPTY_TUPLE = _tuple([])


class _Machine:
    """The simulated stack, marks and memo of one stream."""

    def __init__(self, roles: Mapping[tuple[str, str], str], max_bytes: int, end: int):
        self.roles, self.max_bytes, self.end = roles, max_bytes, end
        self.stack: list[_Value] = []
        self.marks: list[int] = []
        self.memo: dict[int, _Value] = {}
        self.bytes = 0
        self.kwargs_next = False  # NEWOBJ_EX carries a kwargs dict above the args

    # stack plumbing ------------------------------------------------------------------------
    def push(self, v: _Value, payload: int = 0) -> None:
        if v.depth > MAX_DEPTH:
            raise UnsafePickle(f"containers nested deeper than {MAX_DEPTH} levels")
        self.bytes += (PRIMITIVE_BYTES if v.kind == "prim" else OBJECT_BYTES) + payload
        if self.bytes > self.max_bytes:
            raise UnsafePickle(f"pickle would build more than {self.max_bytes} bytes of "
                               "objects (too many for the file's size)")
        self.stack.append(v)

    def pop(self) -> _Value:
        floor = self.marks[-1] if self.marks else 0
        if len(self.stack) <= floor:
            raise UnsafePickle("corrupt pickle (stack underflow)")
        return self.stack.pop()

    def top(self) -> _Value:
        floor = self.marks[-1] if self.marks else 0
        if len(self.stack) <= floor:
            raise UnsafePickle("corrupt pickle (stack underflow)")
        return self.stack[-1]

    def pop_mark(self) -> list[_Value]:
        if not self.marks:
            raise UnsafePickle("corrupt pickle (no MARK)")
        at = self.marks.pop()
        items = self.stack[at:]
        del self.stack[at:]
        return items

    def grow(self, target: _Value, items: list[_Value], extra: int = 1) -> None:
        """Items go into a mutable container that is already on the stack."""
        depth = 1 + max((v.depth for v in items), default=0)
        target.depth = max(target.depth, depth)
        if target.depth > MAX_DEPTH:
            raise UnsafePickle(f"containers nested deeper than {MAX_DEPTH} levels")
        self.bytes += 8 * len(items) * extra

    def keys(self, keys: list[_Value], where: str) -> None:
        for k in keys:
            if not k.keysafe:
                raise UnsafePickle(f"refused {where}: only str, bytes, numbers, None and small "
                                   f"tuples of those may be hashed (found a {k.kind})")

    def role(self, module: str, name: str) -> str:
        role = self.roles.get((module, name))
        if role is None:
            raise UnsafePickle(f"refused to load global '{module[:100]}.{name[:100]}': not on "
                               "the allow-list of tensor/container types (jaxfair never runs "
                               "code from a checkpoint)")
        return role

    # opcodes: one handler per opcode name (a dict lookup per opcode keeps the scan at a few
    # microseconds per opcode, which bounds how long a crafted stream can keep it busy) ------
    def handlers(self) -> dict:
        h = {name: self.primitive for name in _PRIMITIVES}
        h.update({name: self.refused(name) for name in _REFUSED})
        h.update({
            "PROTO": self.proto, "FRAME": self.frame, "STOP": self.stop, "MARK": self.mark,
            "POP": self.pop_op, "POP_MARK": lambda arg, pos: self.pop_mark(),
            "DUP": lambda arg, pos: self.push(self.top()),
            "PUT": self.put, "BINPUT": self.put, "LONG_BINPUT": self.put,
            "MEMOIZE": lambda arg, pos: self.put(len(self.memo), pos),
            "GET": self.get, "BINGET": self.get, "LONG_BINGET": self.get,
            "EMPTY_TUPLE": lambda arg, pos: self.push(_EMPTY_TUPLE),
            "TUPLE": lambda arg, pos: self.make_tuple(self.pop_mark()),
            "TUPLE1": lambda arg, pos: self.make_tuple([self.pop()]),
            "TUPLE2": lambda arg, pos: self.make_tuple(self.pop_n(2)),
            "TUPLE3": lambda arg, pos: self.make_tuple(self.pop_n(3)),
            "EMPTY_LIST": lambda arg, pos: self.push(_Value("list", 1)),
            "LIST": lambda arg, pos: self.container("list", self.pop_mark()),
            "EMPTY_DICT": lambda arg, pos: self.push(_Value("dict", 1)),
            "DICT": self.dict_op, "EMPTY_SET": lambda arg, pos: self.push(_Value("set", 1)),
            "FROZENSET": self.frozenset_op,
            "BYTEARRAY8": lambda arg, pos: self.push(_Value("bytearray"), len(arg)),
            "APPEND": lambda arg, pos: self.append([self.pop()]),
            "APPENDS": lambda arg, pos: self.append(self.pop_mark()),
            "SETITEM": lambda arg, pos: self.setitems(self.pop_n(2)),
            "SETITEMS": lambda arg, pos: self.setitems(self.pop_mark()),
            "ADDITEMS": self.additems, "GLOBAL": self.global_op,
            "STACK_GLOBAL": self.stack_global, "PERSID": self.persid,
            "BINPERSID": self.persid, "REDUCE": self.reduce, "NEWOBJ": self.newobj,
            "NEWOBJ_EX": self.newobj, "BUILD": self.build})
        return h

    def primitive(self, arg, pos) -> None:
        if isinstance(arg, (str, bytes)):
            self.push(_prim(arg), len(arg))
        else:
            self.push(_PRIM)

    @staticmethod
    def refused(name: str):
        def handler(arg, pos):
            raise UnsafePickle(f"refused pickle opcode {name}: {_REFUSED[name]}")
        return handler

    def proto(self, arg, pos) -> None:
        if not 0 <= arg <= 5:
            raise UnsafePickle(f"unsupported pickle protocol {arg}")

    def frame(self, arg, pos) -> None:
        if arg > self.end - pos - 9:
            raise UnsafePickle("corrupt pickle (frame longer than the rest of the file)")

    def stop(self, arg, pos) -> None:
        if len(self.stack) != 1 or self.marks:
            raise UnsafePickle("corrupt pickle (unbalanced stack at STOP)")

    def mark(self, arg, pos) -> None:
        if len(self.marks) >= MAX_MARKS:
            raise UnsafePickle(f"more than {MAX_MARKS} nested MARKs")
        self.marks.append(len(self.stack))

    def pop_op(self, arg, pos) -> None:
        if self.marks and len(self.stack) == self.marks[-1]:
            self.marks.pop()
        else:
            self.pop()

    def pop_n(self, n: int) -> list[_Value]:
        return [self.pop() for _ in range(n)][::-1]

    def put(self, idx, pos) -> None:
        # Picklers number memo entries 0, 1, 2, ...; the C unpickler sizes its memo table by
        # the largest index it sees, so a stray 2**31 would cost 16 GB.
        if not isinstance(idx, int) or not 0 <= idx <= len(self.memo):
            raise UnsafePickle("refused memo index out of sequence (memo bomb?)")
        self.memo[idx] = self.top()

    def get(self, idx, pos) -> None:
        if idx not in self.memo:
            raise UnsafePickle("corrupt pickle (memo index never stored)")
        self.push(self.memo[idx])

    def make_tuple(self, items: list[_Value]) -> None:
        self.push(_tuple(items), 8 * len(items))

    def container(self, kind: str, items: list[_Value]) -> None:
        self.push(_Value(kind, 1 + max((v.depth for v in items), default=0)), 8 * len(items))

    def dict_op(self, arg, pos) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise UnsafePickle("corrupt pickle (odd number of dict items)")
        self.keys(items[::2], "dict key")
        self.container("dict", items)

    def frozenset_op(self, arg, pos) -> None:
        items = self.pop_mark()
        self.keys(items, "set element")
        self.container("frozenset", items)

    def additems(self, arg, pos) -> None:
        items = self.pop_mark()
        target = self.top()
        if target.kind != "set":
            raise UnsafePickle(f"refused ADDITEMS into a {target.kind}")
        self.keys(items, "set element")
        self.grow(target, items, 2)

    def global_op(self, arg, pos) -> None:
        module, _, attr = arg.partition(" ")
        self.push(_Value("global", role=self.role(module, attr)))

    def stack_global(self, arg, pos) -> None:
        attr, module = self.pop(), self.pop()
        if attr.text is None or module.text is None:
            raise UnsafePickle("refused STACK_GLOBAL with non-string names")
        self.push(_Value("global", role=self.role(module.text, attr.text)))

    def persid(self, arg, pos) -> None:
        pid = _prim(arg) if arg is not None else self.pop()
        self.push(_Value("persistent", pid.depth + 1))

    def reduce(self, arg, pos) -> None:
        args, func = self.pop(), self.pop()
        self.push(self._call(func, args, "REDUCE"))

    def newobj(self, arg, pos) -> None:
        kwargs = self.pop() if self.kwargs_next else _EMPTY_TUPLE
        args, cls = self.pop(), self.pop()
        if cls.role not in (CONSTRUCT, MAPPING):
            raise UnsafePickle("refused NEWOBJ of something that is not an allowed class")
        self.push(self._call(cls, _tuple([args, kwargs]), "NEWOBJ"))

    def build(self, arg, pos) -> None:
        state = self.pop()
        target = self.top()
        if not target.fresh:
            raise UnsafePickle(f"refused BUILD (state setting) on a {target.kind} the file "
                               "did not just create (shared object poisoning?)")
        self.grow(target, [state])

    def append(self, items: list[_Value]) -> None:
        target = self.top()
        if target.kind != "list":
            raise UnsafePickle(f"refused APPEND to a {target.kind}")
        self.grow(target, items)

    def setitems(self, items: list[_Value]) -> None:
        if len(items) % 2:
            raise UnsafePickle("corrupt pickle (odd number of dict items)")
        target = self.top()
        if target.kind != "dict" and not (target.kind == "object" and target.role == MAPPING):
            raise UnsafePickle(f"refused SETITEM on a {target.kind}")
        self.keys(items[::2], "dict key")
        self.grow(target, items, 2)

    def _call(self, func: _Value, args: _Value, op: str) -> _Value:
        if func.kind != "global" or func.role not in (CONSTRUCT, MAPPING, CALL):
            raise UnsafePickle(f"refused {op} of a {func.role or func.kind} (only allow-listed "
                               "constructors may be called)")
        if args.kind != "tuple":
            raise UnsafePickle(f"corrupt pickle ({op} arguments are a {args.kind})")
        return _Value("object", args.depth, role=func.role, fresh=func.role != CALL)


def scan(f: BinaryIO, roles: Mapping[tuple[str, str], str], max_bytes: int, end: int,
         max_ops: int = MAX_OPS) -> tuple[int, int, int]:
    """Checks one pickle stream from ``f``'s position up to its STOP opcode.

    Args:
      f: a seekable binary file positioned at the stream's first byte.
      roles: allow-listed globals ``(module, name)`` -> CONSTRUCT, MAPPING, CALL or VALUE.
      max_bytes: estimated object bytes the stream may build (derived from the file size).
      end: the file's length in bytes (frames may not reach past it).
      max_ops: most opcodes the stream may have (bounds the scan's time).

    Returns:
      (position just after the stream's STOP opcode, where ``f`` is left; estimated bytes
      of the objects the stream builds; number of opcodes).

    Raises:
      UnsafePickle: the stream is malformed or asks for something refused.
    """
    machine = _Machine(roles, max_bytes, end)
    handlers = machine.handlers()
    try:
        for count, (op, arg, pos) in enumerate(pickletools.genops(f)):
            if count >= max_ops:
                raise UnsafePickle(f"pickle has more than {max_ops} opcodes")
            handler = handlers.get(op.name)
            if handler is None:
                raise UnsafePickle(f"refused unknown pickle opcode {op.name}")
            machine.kwargs_next = op.name == "NEWOBJ_EX"
            handler(arg, pos)
    except UnsafePickle:
        raise
    except (ValueError, EOFError, OverflowError, UnicodeDecodeError) as e:
        # genops' own findings: truncated arguments, unknown opcodes, lengths past the end.
        raise UnsafePickle(f"corrupt or truncated pickle data ({type(e).__name__}: "
                           f"{str(e)[:200]})") from None
    return f.tell(), machine.bytes, count + 1
