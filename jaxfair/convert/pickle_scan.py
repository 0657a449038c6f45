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
OBJECT_BYTES = 64  # estimated size of one unpickled object (an empty list is 56 bytes)

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


def _tuple(items: list[_Value]) -> _Value:
    depth = 1 + max((v.depth for v in items), default=0)
    cost = min(1 + sum(v.cost for v in items), KEY_COST + 1)
    keysafe = all(v.keysafe for v in items) and depth <= KEY_DEPTH and cost <= KEY_COST
    return _Value("tuple", depth, cost, keysafe)


class _Machine:
    """The simulated stack, marks and memo of one stream."""

    def __init__(self, roles: Mapping[tuple[str, str], str], max_bytes: int, end: int):
        self.roles, self.max_bytes, self.end = roles, max_bytes, end
        self.stack: list[_Value] = []
        self.marks: list[int] = []
        self.memo: dict[int, _Value] = {}
        self.bytes = 0

    # stack plumbing ------------------------------------------------------------------------
    def push(self, v: _Value, payload: int = 0) -> None:
        if v.depth > MAX_DEPTH:
            raise UnsafePickle(f"containers nested deeper than {MAX_DEPTH} levels")
        self.bytes += OBJECT_BYTES + payload
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

    # opcodes -------------------------------------------------------------------------------
    def step(self, name: str, arg, pos: int) -> None:  # noqa: C901 (one branch per opcode)
        if name in _PRIMITIVES:
            payload = len(arg) if isinstance(arg, (str, bytes)) else 0
            self.push(_prim(arg), payload)
        elif name in _REFUSED:
            raise UnsafePickle(f"refused pickle opcode {name}: {_REFUSED[name]}")
        elif name == "PROTO":
            if not 0 <= arg <= 5:
                raise UnsafePickle(f"unsupported pickle protocol {arg}")
        elif name == "FRAME":
            if arg > self.end - pos - 9:
                raise UnsafePickle("corrupt pickle (frame longer than the rest of the file)")
        elif name == "STOP":
            if len(self.stack) != 1 or self.marks:
                raise UnsafePickle("corrupt pickle (unbalanced stack at STOP)")
        elif name == "MARK":
            if len(self.marks) >= MAX_MARKS:
                raise UnsafePickle(f"more than {MAX_MARKS} nested MARKs")
            self.marks.append(len(self.stack))
        elif name == "POP":
            if self.marks and len(self.stack) == self.marks[-1]:
                self.marks.pop()
            else:
                self.pop()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            self.push(self.top())
        elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            idx = len(self.memo) if name == "MEMOIZE" else arg
            if not isinstance(idx, int) or not 0 <= idx <= len(self.memo):
                raise UnsafePickle("refused memo index out of sequence (memo bomb?)")
            self.memo[idx] = self.top()
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in self.memo:
                raise UnsafePickle("corrupt pickle (memo index never stored)")
            self.push(self.memo[arg])
        elif name in ("EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"):
            n = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}.get(name)
            items = self.pop_mark() if n is None else [self.pop() for _ in range(n)][::-1]
            self.push(_tuple(items), 8 * len(items))
        elif name in ("EMPTY_LIST", "LIST"):
            items = self.pop_mark() if name == "LIST" else []
            self.push(_Value("list", 1 + max((v.depth for v in items), default=0)),
                      8 * len(items))
        elif name in ("EMPTY_DICT", "DICT"):
            items = self.pop_mark() if name == "DICT" else []
            if len(items) % 2:
                raise UnsafePickle("corrupt pickle (odd number of dict items)")
            self.keys(items[::2], "dict key")
            self.push(_Value("dict", 1 + max((v.depth for v in items), default=0)),
                      16 * len(items))
        elif name == "EMPTY_SET":
            self.push(_Value("set", 1))
        elif name == "FROZENSET":
            items = self.pop_mark()
            self.keys(items, "set element")
            self.push(_Value("frozenset", 1 + max((v.depth for v in items), default=0)),
                      16 * len(items))
        elif name == "BYTEARRAY8":
            self.push(_Value("bytearray"), len(arg))
        elif name == "APPEND":
            v = self.pop()
            self._append(self.top(), [v])
        elif name == "APPENDS":
            items = self.pop_mark()
            self._append(self.top(), items)
        elif name == "SETITEM":
            v, k = self.pop(), self.pop()
            self._setitems(self.top(), [k, v])
        elif name == "SETITEMS":
            items = self.pop_mark()
            if len(items) % 2:
                raise UnsafePickle("corrupt pickle (odd number of dict items)")
            self._setitems(self.top(), items)
        elif name == "ADDITEMS":
            items = self.pop_mark()
            target = self.top()
            if target.kind != "set":
                raise UnsafePickle(f"refused ADDITEMS into a {target.kind}")
            self.keys(items, "set element")
            self.grow(target, items, 2)
        elif name == "GLOBAL":
            module, _, attr = arg.partition(" ")
            self.push(_Value("global", role=self.role(module, attr)))
        elif name == "STACK_GLOBAL":
            attr, module = self.pop(), self.pop()
            if attr.text is None or module.text is None:
                raise UnsafePickle("refused STACK_GLOBAL with non-string names")
            self.push(_Value("global", role=self.role(module.text, attr.text)))
        elif name in ("PERSID", "BINPERSID"):
            pid = _prim(arg) if name == "PERSID" else self.pop()
            self.push(_Value("persistent", pid.depth + 1))
        elif name == "REDUCE":
            args, func = self.pop(), self.pop()
            self.push(self._call(func, args, "REDUCE"))
        elif name in ("NEWOBJ", "NEWOBJ_EX"):
            kwargs = self.pop() if name == "NEWOBJ_EX" else _tuple([])
            args, cls = self.pop(), self.pop()
            if cls.role not in (CONSTRUCT, MAPPING):
                raise UnsafePickle(f"refused {name} of something that is not an allowed class")
            self.push(self._call(cls, _tuple([args, kwargs]), name))
        elif name == "BUILD":
            state = self.pop()
            target = self.top()
            if not target.fresh:
                raise UnsafePickle(f"refused BUILD (state setting) on a {target.kind} the file "
                                   "did not just create (shared object poisoning?)")
            self.grow(target, [state])
        else:
            raise UnsafePickle(f"refused unknown pickle opcode {name}")

    def _call(self, func: _Value, args: _Value, op: str) -> _Value:
        if func.kind != "global" or func.role not in (CONSTRUCT, MAPPING, CALL):
            raise UnsafePickle(f"refused {op} of a {func.role or func.kind} (only allow-listed "
                               "constructors may be called)")
        if args.kind != "tuple":
            raise UnsafePickle(f"corrupt pickle ({op} arguments are a {args.kind})")
        return _Value("object", args.depth, role=func.role, fresh=func.role != CALL)

    def _append(self, target: _Value, items: list[_Value]) -> None:
        if target.kind != "list":
            raise UnsafePickle(f"refused APPEND to a {target.kind}")
        self.grow(target, items)

    def _setitems(self, target: _Value, items: list[_Value]) -> None:
        if target.kind != "dict" and not (target.kind == "object" and target.role == MAPPING):
            raise UnsafePickle(f"refused SETITEM on a {target.kind}")
        self.keys(items[::2], "dict key")
        self.grow(target, items, 2)


def scan(f: BinaryIO, roles: Mapping[tuple[str, str], str], max_bytes: int, end: int
         ) -> tuple[int, int]:
    """Checks one pickle stream from ``f``'s position up to its STOP opcode.

    Args:
      f: a seekable binary file positioned at the stream's first byte.
      roles: allow-listed globals ``(module, name)`` -> CONSTRUCT, MAPPING, CALL or VALUE.
      max_bytes: estimated object bytes the stream may build (derived from the file size).
      end: the file's length in bytes (frames may not reach past it).

    Returns:
      (position just after the stream's STOP opcode, where ``f`` is left; estimated bytes
      of the objects the stream builds).

    Raises:
      UnsafePickle: the stream is malformed or asks for something refused.
    """
    machine = _Machine(roles, max_bytes, end)
    try:
        for op, arg, pos in pickletools.genops(f):
            machine.step(op.name, arg, pos)
    except UnsafePickle:
        raise
    except (ValueError, EOFError, OverflowError, UnicodeDecodeError) as e:
        # genops' own findings: truncated arguments, unknown opcodes, lengths past the end.
        raise UnsafePickle(f"corrupt or truncated pickle data ({type(e).__name__}: "
                           f"{str(e)[:200]})") from None
    return f.tell(), machine.bytes
