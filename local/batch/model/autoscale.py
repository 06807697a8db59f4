"""Autoscale formulas: the subset of Batch's formula language the local service evaluates.

Supported: statements separated by ``;`` or new lines; assignments to service
variables (``$TargetDedicatedNodes``, ``$TargetLowPriorityNodes``,
``$NodeDeallocationOption``) and to user variables; numbers, strings,
``+ - * /``, comparisons, ``&& || !``, ``cond ? a : b``; the functions ``min``,
``max``, ``avg``, ``sum``, ``count``, ``ceil``, ``floor``, ``round``, ``abs``;
sample methods ``$X.GetSample(...)`` (the current value as a one-sample list),
``$X.GetSamplePercent(...)`` (always 100) and ``$X.Count()``; ``TimeInterval_*``
constants. Readable variables: ``$PendingTasks``, ``$ActiveTasks``,
``$RunningTasks``, ``$SucceededTasks``, ``$FailedTasks``,
``$CurrentDedicatedNodes``, ``$CurrentLowPriorityNodes``, ``$TaskSlotsPerNode``
and the current targets. Metrics Batch samples from nodes (``$CPUPercent``,
``$MemoryBytes``, disk and network counters) have no meaning here and are
rejected with an error naming them, as is anything else outside this subset.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

from local.batch.model.errors import BatchServiceError
from local.batch.model.iso8601 import iso, parse_duration, utcnow

TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<str>\"[^\"]*\"|'[^']*')|(?P<name>\$?[A-Za-z_][A-Za-z0-9_]*)"
                   r"|(?P<op>==|!=|<=|>=|&&|\|\||[-+*/<>!?:(),.=;]))")
SETTABLE = ("$TargetDedicatedNodes", "$TargetLowPriorityNodes", "$NodeDeallocationOption")
TIME_INTERVALS = {"TimeInterval_Zero": 0, "TimeInterval_100ns": 1e-7, "TimeInterval_Microsecond": 1e-6,
                  "TimeInterval_Millisecond": 1e-3, "TimeInterval_Second": 1, "TimeInterval_Minute": 60,
                  "TimeInterval_Hour": 3600, "TimeInterval_Day": 86400, "TimeInterval_Week": 604800}
DEALLOCATION_OPTIONS = ("requeue", "terminate", "taskcompletion", "retaineddata")
UNSUPPORTED_METRICS = ("$CPUPercent", "$WallClockSeconds", "$MemoryBytes", "$DiskBytes", "$DiskReadBytes", "$DiskWriteBytes",
                       "$DiskReadOps", "$DiskWriteOps", "$NetworkInBytes", "$NetworkOutBytes", "$SampleNodeCount",
                       "$UsableNodeCount", "$PreemptedNodeCount")


class FormulaError(ValueError):
    """The formula cannot be evaluated here; the message says what and where."""


def _flat(values: tuple[Any, ...]) -> list[float]:
    out: list[float] = []
    for value in values:
        out.extend(value if isinstance(value, list) else [value])
    return out


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": lambda *a: min(_flat(a)), "max": lambda *a: max(_flat(a)), "sum": lambda *a: sum(_flat(a)),
    "avg": lambda *a: (sum(_flat(a)) / len(_flat(a))) if _flat(a) else 0.0, "count": lambda *a: len(_flat(a)),
    "ceil": lambda x: math.ceil(x), "floor": lambda x: math.floor(x), "round": lambda x: round(x), "abs": lambda x: abs(x),
}


@dataclass
class _Parser:
    tokens: list[tuple[str, str]]
    variables: dict[str, Any]
    pos: int = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise FormulaError(f"the formula ends where {expected or 'more'} was expected")
        token = self.tokens[self.pos]
        if expected is not None and token[1] != expected:
            raise FormulaError(f"expected '{expected}' but found '{token[1]}'")
        self.pos += 1
        return token

    def statements(self) -> None:
        while self.peek() is not None:
            if self.peek() == ";":
                self.take()
                continue
            kind, name = self.take()
            if kind != "name" or self.peek() != "=":
                raise FormulaError(f"a statement must assign a variable (near '{name}')")
            self.take("=")
            if name.startswith("$") and name not in SETTABLE:
                raise FormulaError(f"'{name}' cannot be assigned; service variables that can are {', '.join(SETTABLE)}")
            self.variables[name] = self.ternary()
            if self.peek() not in (None, ";"):
                raise FormulaError(f"unexpected '{self.peek()}' after the assignment to {name}")

    def ternary(self) -> Any:
        condition = self.binary(0)
        if self.peek() == "?":
            self.take()
            yes = self.ternary()
            self.take(":")
            no = self.ternary()
            return yes if condition else no
        return condition

    LEVELS = (("||",), ("&&",), ("==", "!="), ("<", "<=", ">", ">="), ("+", "-"), ("*", "/"))

    def binary(self, level: int) -> Any:
        if level == len(self.LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek() in self.LEVELS[level]:
            op = self.take()[1]
            right = self.binary(level + 1)
            left = _apply(op, left, right)
        return left

    def unary(self) -> Any:
        if self.peek() == "-":
            self.take()
            return -self.unary()
        if self.peek() == "!":
            self.take()
            return 0 if self.unary() else 1
        return self.postfix(self.primary())

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "num":
            return float(text)
        if kind == "str":
            return text[1:-1]
        if text == "(":
            value = self.ternary()
            self.take(")")
            return value
        if kind != "name":
            raise FormulaError(f"unexpected '{text}'")
        if self.peek() == "(":
            if text not in FUNCTIONS:
                raise FormulaError(f"the function '{text}' is not supported by the local Batch service")
            return FUNCTIONS[text](*self.arguments())
        if text in TIME_INTERVALS:
            return TIME_INTERVALS[text]
        if text in DEALLOCATION_OPTIONS:
            return text
        if text in UNSUPPORTED_METRICS:
            raise FormulaError(f"'{text}' is a node metric the local Batch service does not sample")
        if text not in self.variables:
            raise FormulaError(f"'{text}' is not defined")
        return self.variables[text]

    def arguments(self) -> list[Any]:
        self.take("(")
        args: list[Any] = []
        while self.peek() != ")":
            args.append(self.ternary())
            if self.peek() == ",":
                self.take()
        self.take(")")
        return args

    def postfix(self, value: Any) -> Any:
        while self.peek() == ".":
            self.take()
            _, method = self.take()
            self.arguments()  # sample windows and percentages: there is one sample, the current value
            if method == "GetSample":
                value = [value] if not isinstance(value, list) else value
            elif method == "GetSamplePercent":
                value = 100.0
            elif method == "Count":
                value = float(len(value)) if isinstance(value, list) else 1.0
            else:
                raise FormulaError(f"the method '{method}' is not supported by the local Batch service")
        return value


def _apply(op: str, left: Any, right: Any) -> Any:
    if isinstance(left, list) or isinstance(right, list):
        if op not in "+-*/":
            raise FormulaError(f"'{op}' needs single values; wrap samples in avg(), max(), min() or sum()")
        # doubleVec op double works element by element, as in Batch
        lefts = left if isinstance(left, list) else [left] * len(right)
        rights = right if isinstance(right, list) else [right] * len(left)
        return [_apply(op, a, b) for a, b in zip(lefts, rights)]
    if op == "/" and right == 0:
        raise FormulaError("division by zero")
    return {
        "+": lambda: left + right, "-": lambda: left - right, "*": lambda: left * right, "/": lambda: left / right,
        "<": lambda: float(left < right), "<=": lambda: float(left <= right), ">": lambda: float(left > right),
        ">=": lambda: float(left >= right), "==": lambda: float(left == right), "!=": lambda: float(left != right),
        "&&": lambda: float(bool(left) and bool(right)), "||": lambda: float(bool(left) or bool(right)),
    }[op]()


def evaluate(formula: str, inputs: dict[str, float]) -> dict[str, Any]:
    """Run ``formula`` with the service variables in ``inputs``; return every variable afterwards."""
    tokens, pos = [], 0
    text = formula.replace("\r", "")
    text = re.sub(r"//[^\n]*", "", text).replace("\n", ";")
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match or match.end() == pos:
            if text[pos:].strip() == "":
                break
            raise FormulaError(f"unexpected character '{text[pos:].strip()[0]}' at position {pos}")
        tokens.append((match.lastgroup or "", match.group(match.lastgroup or 0)))
        pos = match.end()
    variables: dict[str, Any] = dict(inputs)
    _Parser(tokens, variables).statements()
    return variables


def targets(formula: str, inputs: dict[str, float]) -> tuple[int, int, str, str]:
    """(dedicated, low priority, deallocation option, Batch's results string) for ``formula``."""
    result = evaluate(formula, inputs)
    for name in SETTABLE[:2]:
        value = result.get(name)
        if isinstance(value, list):
            if len(value) != 1:
                raise FormulaError(f"{name} must be a single number, not {len(value)} samples; use avg(), max() or min()")
            result[name] = value[0]
    dedicated = max(0, int(round(float(result.get("$TargetDedicatedNodes", inputs.get("$TargetDedicatedNodes", 0))))))
    low = max(0, int(round(float(result.get("$TargetLowPriorityNodes", inputs.get("$TargetLowPriorityNodes", 0))))))
    option = str(result.get("$NodeDeallocationOption", "requeue"))
    shown = [f"{name}={_show(value)}" for name, value in result.items() if name not in inputs or name in SETTABLE]
    return dedicated, low, option, ";".join(shown)


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "{" + ",".join(_show(v) for v in value) + "}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ---- applying formulas to pools (state layer; called under the account lock) -------------------
MIN_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS = 5 * 60, 168 * 3600
DEFAULT_INTERVAL = "PT15M"


def pool_inputs(account: Any, pool: Any) -> dict[str, float]:
    """The service variables a formula reads, from the tasks of the jobs on ``pool``."""
    counts = {"active": 0, "running": 0, "succeeded": 0, "failed": 0}
    for job in account.jobs.values():
        if job.pool_id.lower() != pool.id.lower() or job.state not in ("active", "terminating"):
            continue
        for task in account.tasks.get(job.id, {}).values():
            if task.state == "active":
                counts["active"] += 1
            elif task.state in ("preparing", "running"):
                counts["running"] += 1
            elif task.state == "completed":
                counts["succeeded" if task.result == "success" else "failed"] += 1
    dedicated = sum(1 for n in pool.nodes.values() if n.is_dedicated)
    return {
        "$PendingTasks": float(counts["active"] + counts["running"]), "$ActiveTasks": float(counts["active"]),
        "$RunningTasks": float(counts["running"]), "$SucceededTasks": float(counts["succeeded"]),
        "$FailedTasks": float(counts["failed"]), "$CurrentDedicatedNodes": float(dedicated),
        "$CurrentLowPriorityNodes": float(len(pool.nodes) - dedicated), "$TaskSlotsPerNode": float(pool.slots_per_node),
        "$TargetDedicatedNodes": float(pool.target_dedicated), "$TargetLowPriorityNodes": float(pool.target_low_priority),
    }


def run_formula(account: Any, pool: Any, formula: str) -> tuple[dict[str, Any], tuple[int, int] | None]:
    """Batch's AutoScaleRun for ``formula`` on ``pool`` now, and the targets it sets (None on error)."""
    stamp = iso(utcnow())
    try:
        dedicated, low, _option, shown = targets(formula, pool_inputs(account, pool))
    except FormulaError as exc:
        return {"timestamp": stamp, "error": {"code": "AutoScalingFormulaEvaluationError", "message": str(exc)}}, None
    return {"timestamp": stamp, "results": shown}, (dedicated, low)


def check_formula(formula: str | None) -> str:
    """Reject a formula the local service cannot evaluate, with the reason, as Batch rejects bad ones."""
    if not formula:
        raise BatchServiceError(400, "MissingRequiredProperty", "A required property was not specified: autoScaleFormula.",
                                {"PropertyName": "autoScaleFormula"})
    probe = {name: 0.0 for name in ("$PendingTasks", "$ActiveTasks", "$RunningTasks", "$SucceededTasks", "$FailedTasks",
                                    "$CurrentDedicatedNodes", "$CurrentLowPriorityNodes", "$TaskSlotsPerNode",
                                    "$TargetDedicatedNodes", "$TargetLowPriorityNodes")}
    try:
        targets(formula, probe)
    except FormulaError as exc:
        raise BatchServiceError(400, "InvalidAutoScaleFormula", f"The autoscale formula is not valid: {exc}.",
                                {"PropertyName": "autoScaleFormula"}) from None
    return formula


def check_interval(interval: str | None) -> str:
    value = interval or DEFAULT_INTERVAL
    seconds = parse_duration(value).total_seconds()
    if not MIN_INTERVAL_SECONDS <= seconds <= MAX_INTERVAL_SECONDS:
        raise BatchServiceError(400, "InvalidPropertyValue", "autoScaleEvaluationInterval must be between 5 minutes and 168 hours.",
                                {"PropertyName": "autoScaleEvaluationInterval", "PropertyValue": value})
    return value


def apply(account: Any, pool: Any) -> None:
    """Evaluate the pool's formula and, if it works, move the pool's targets (and resize)."""
    run, result = run_formula(account, pool, pool.spec["autoScaleFormula"])
    pool.autoscale_run = run
    interval = parse_duration(pool.spec.get("autoScaleEvaluationInterval") or DEFAULT_INTERVAL) or timedelta(minutes=15)
    pool.autoscale_due = utcnow() + interval
    if result is not None and result != (pool.target_dedicated, pool.target_low_priority):
        pool.spec["targetDedicatedNodes"], pool.spec["targetLowPriorityNodes"] = result
        pool.set_allocation_state("resizing")
    pool.touch()
