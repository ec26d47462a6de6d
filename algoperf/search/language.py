"""The language of searched update rules: straight-line programs over named tensors.

A program maps, per parameter tensor, the values

    g (gradient), p (parameter), step (t = 1, 2, ...), lr (the schedule's value at t-1),
    and its state slots (e.g. m, v: tensors like p, zero before the first step)

through a list of statements ``name = op(arg, ...)`` (each arg a name assigned earlier or
a constant) to ``update``, which is added to the parameter (optax's convention: p_t =
p_{t-1} + update). A statement that assigns a slot sets the slot's value for the next
step. The learning rate follows one schedule of a small family (``Schedule``). A program
prints as readable Python (``to_text``; the same text is what runs, see ``compile.py``),
parses back (``from_text``) and serialises to JSON (``to_json`` / ``from_json``).
"""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

INPUTS = ("g", "p", "step", "lr")
OUTPUT = "update"
SCHEDULES = ("constant", "warmup_cosine", "warmup_linear")


@dataclass(frozen=True)
class Op:
    """One operation: arity, how it prints, whether its arguments commute."""

    name: str
    arity: int
    template: str  # Python text with {0}, {1}, ... for the arguments
    commutative: bool = False


OPS: dict[str, Op] = {op.name: op for op in (
    Op("add", 2, "{0} + {1}", True),
    Op("sub", 2, "{0} - {1}"),
    Op("mul", 2, "{0} * {1}", True),
    Op("div", 2, "{0} / {1}"),
    Op("pow", 2, "{0} ** {1}"),
    Op("neg", 1, "-{0}"),
    Op("sign", 1, "jnp.sign({0})"),
    Op("abs", 1, "jnp.abs({0})"),
    Op("sqrt", 1, "jnp.sqrt({0})"),
    Op("exp", 1, "jnp.exp({0})"),
    Op("log", 1, "jnp.log({0})"),
    Op("square", 1, "jnp.square({0})"),
    Op("max", 2, "jnp.maximum({0}, {1})", True),
    Op("min", 2, "jnp.minimum({0}, {1})", True),
    Op("clip", 2, "clip({0}, {1})"),  # clip(x, c) = x limited to [-|c|, |c|]
    Op("interpolate", 3, "interpolate({0}, {1}, {2})"),  # w a + (1 - w) b
    Op("norm", 1, "norm({0})"),  # ||x||_2 of the whole tensor (a scalar)
)}
_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
_CALLS = {"sign": "sign", "abs": "abs", "sqrt": "sqrt", "exp": "exp", "log": "log", "square": "square",
          "maximum": "max", "minimum": "min", "clip": "clip", "interpolate": "interpolate", "norm": "norm"}

Arg = str | float


class ProgramError(ValueError):
    """A program's text or JSON does not follow the language."""


@dataclass(frozen=True)
class Stmt:
    target: str
    op: str
    args: tuple[Arg, ...]

    def text(self) -> str:
        return f"{self.target} = " + OPS[self.op].template.format(*(format_arg(a) for a in self.args))


@dataclass(frozen=True)
class Schedule:
    """lr_t: constant ``lr``; or a linear warmup from 0 over ``warmup`` x step_hint steps to
    ``lr``, then a cosine (warmup_cosine) or a line (warmup_linear) down to 0 at step_hint."""

    kind: str = "constant"
    lr: float = 1e-3
    warmup: float = 0.05

    def text(self) -> str:
        return f"schedule = {self.kind}(lr={format_arg(self.lr)}, warmup={format_arg(self.warmup)})"


@dataclass(frozen=True)
class Program:
    slots: tuple[str, ...]
    body: tuple[Stmt, ...]
    schedule: Schedule = field(default_factory=Schedule)

    def to_text(self) -> str:
        """The program as Python: ``def rule(...)`` plus the schedule line."""
        lines = [f"def rule({', '.join(INPUTS + self.slots)}):"]
        lines += [f"    {s.text()}" for s in self.body]
        state = ", ".join(self.slots) + ("," if len(self.slots) == 1 else "")
        lines.append(f"    return {OUTPUT}, ({state})")
        return "\n".join(lines) + "\n\n\n" + self.schedule.text() + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "slots": list(self.slots),
            "body": [[s.target, s.op, *s.args] for s in self.body],
            "schedule": {"kind": self.schedule.kind, "lr": self.schedule.lr, "warmup": self.schedule.warmup},
        }

    def constants(self) -> list[float]:
        return [a for s in self.body for a in s.args if not isinstance(a, str)]

    def with_constants(self, values: list[float]) -> Program:
        """The same program with its constants (in ``constants()`` order) replaced."""
        it = iter(values)
        body = tuple(replace(s, args=tuple(a if isinstance(a, str) else float(next(it)) for a in s.args)) for s in self.body)
        return replace(self, body=body)


def format_arg(a: Arg) -> str:
    if isinstance(a, str):
        return a
    return repr(float(f"{a:.6g}"))


def validate(program: Program) -> Program:
    """Raise ProgramError unless every statement is well formed and reads only defined names."""
    if len(set(program.slots)) != len(program.slots):
        raise ProgramError(f"slots {program.slots} repeat a name")
    for name in program.slots:
        if not name.isidentifier() or name in INPUTS or name == OUTPUT:
            raise ProgramError(f"slot name {name!r} is not allowed (not an identifier, or an input / {OUTPUT})")
    defined = set(INPUTS) | set(program.slots)
    for i, s in enumerate(program.body, 1):
        if s.op not in OPS:
            raise ProgramError(f"statement {i} ({s.target}): unknown op {s.op!r}; ops: {', '.join(OPS)}")
        if len(s.args) != OPS[s.op].arity:
            raise ProgramError(f"statement {i}: {s.op} takes {OPS[s.op].arity} arguments, got {len(s.args)}")
        for a in s.args:
            if isinstance(a, str) and a not in defined:
                raise ProgramError(f"statement {i} ({s.target} = {s.op}(...)) reads {a!r} before it is assigned")
            if not isinstance(a, str) and not math.isfinite(a):
                raise ProgramError(f"statement {i}: constant {a} is not finite")
        if s.target in INPUTS or not s.target.isidentifier():
            raise ProgramError(f"statement {i} assigns {s.target!r}: inputs ({', '.join(INPUTS)}) are read-only")
        defined.add(s.target)
    if OUTPUT not in defined:
        raise ProgramError(f"the program never assigns {OUTPUT!r} (the value added to the parameter)")
    sch = program.schedule
    if sch.kind not in SCHEDULES or not sch.lr > 0 or not 0 <= sch.warmup < 1:
        raise ProgramError(f"schedule {sch}: kind one of {SCHEDULES}, lr > 0, 0 <= warmup < 1")
    return program


def from_json(data: dict[str, Any]) -> Program:
    try:
        body = tuple(Stmt(row[0], row[1], tuple(a if isinstance(a, str) else float(a) for a in row[2:])) for row in data["body"])
        program = Program(tuple(data["slots"]), body, Schedule(**data.get("schedule", {})))
    except (KeyError, TypeError, IndexError) as e:
        raise ProgramError(f"not a program in JSON ({type(e).__name__}: {e}); expected slots, body, schedule") from e
    return validate(program)


def dumps(program: Program) -> str:
    return json.dumps(program.to_json(), sort_keys=True)


def from_text(text: str) -> Program:
    """Parse the Python form that ``Program.to_text`` prints (e.g. an LLM's answer)."""
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise ProgramError(f"not Python: {e}") from e
    rules = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "rule"]
    if len(rules) != 1:
        raise ProgramError("expected one `def rule(g, p, step, lr, <slots>):`")
    rule = rules[0]
    params = tuple(a.arg for a in rule.args.args)
    if params[: len(INPUTS)] != INPUTS:
        raise ProgramError(f"rule's arguments must start with {', '.join(INPUTS)}; got {', '.join(params)}")
    body = []
    for node in rule.body:
        if isinstance(node, ast.Return):
            continue
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ProgramError(f"line {node.lineno}: only `name = op(args)` statements are allowed")
        body.append(Stmt(node.targets[0].id, *_parse_expr(node.value)))
    schedule = Schedule()
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and getattr(node.targets[0], "id", "") == "schedule":
            kind = getattr(node.value.func, "id", "")
            kw = {k.arg: _parse_arg(k.value) for k in node.value.keywords}
            schedule = Schedule(kind, **kw)
    return validate(Program(params[len(INPUTS):], tuple(body), schedule))


def _parse_arg(node: ast.expr) -> Arg:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -float(node.operand.value)
    raise ProgramError(f"line {node.lineno}: an argument must be a name or a number, got {ast.unparse(node)!r}")


def _parse_expr(node: ast.expr) -> tuple[str, tuple[Arg, ...]]:
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)], (_parse_arg(node.left), _parse_arg(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Name):
        return "neg", (node.operand.id,)
    if isinstance(node, ast.Call):
        fn = node.func
        name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
        if name in _CALLS:
            return _CALLS[name], tuple(_parse_arg(a) for a in node.args)
    raise ProgramError(f"line {node.lineno}: {ast.unparse(node)!r} is not one operation of the language ({', '.join(OPS)})")
