"""The cascade strategy's answer check: is a local answer good enough to send, or should the cloud model
answer instead? Pure and offline: no model call, microseconds per answer.

`review(prompt, text, finish_reason)` returns None to accept, or the reason to escalate: an empty answer,
one cut at the token limit, a refusal, arithmetic in the answer that does not add up (the answer's own
"a + b = c" lines, recomputed), or no number in the last line where the prompt asks for an amount.
Measured on GSM8K with the weak model's real answers (scripts/eval_router.py, router "cascade"): it
rejects 8.9 % of the answers, 73 % of them really wrong.
"""

from __future__ import annotations

import ast
import operator
import re

_NUM = r"-?\$?\d[\d,]*(?:\.\d+)?"
# "12 * 3 = 36", "$4 x 5 + 2 = $22": an expression of numbers and + - * / x × ÷, an equals sign, a number.
_EQUATION = re.compile(rf"({_NUM}(?:[ \t]*[-+*/x×÷][ \t]*{_NUM})+)[ \t]*=[ \t]*({_NUM})")
_REFUSAL = re.compile(r"^(?:i'?m sorry|sorry|i (?:can(?:no|')t|am unable|won'?t)|as an ai)\b", re.IGNORECASE)
_ASKS_AMOUNT = re.compile(r"\bhow (?:many|much|long|far|old)\b|\bwhat (?:is|was) the (?:total|number|amount|cost)\b",
                          re.IGNORECASE)
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def review(prompt: str, text: str, finish_reason: str | None = "stop") -> str | None:
    """None: send the local answer. Otherwise why the cloud model should answer instead."""
    answer = text.strip()
    if not answer:
        return "empty answer"
    if finish_reason == "length":
        return "answer cut at the token limit"
    if _REFUSAL.match(answer):
        return "the local model declined"
    wrong = wrong_calculations(answer)
    if wrong:
        return f"{wrong} calculation(s) in the answer do not add up"
    if _ASKS_AMOUNT.search(prompt) and not re.search(r"\d", answer.splitlines()[-1]):
        return "the prompt asks for an amount and the answer ends without a number"
    return None


def wrong_calculations(text: str) -> int:
    """How many "expression = result" lines in the text are arithmetically wrong."""
    wrong = 0
    for m in _EQUATION.finditer(text):
        value = _evaluate(m.group(1))
        if value is None:
            continue
        stated = _number(m.group(2))
        if abs(value - stated) > 0.01 + 1e-6 * abs(value):
            wrong += 1
    return wrong


def _number(s: str) -> float:
    return float(s.replace(",", "").replace("$", ""))


def _evaluate(expr: str) -> float | None:
    """+ - * / over numbers, with precedence, through Python's parser but no eval: None if anything else."""
    source = re.sub(r"(?<=[\d\s])[x×](?=[\s\d$])", "*", expr).replace("÷", "/").replace("$", "").replace(",", "")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError:
        return None

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError("not arithmetic")

    try:
        return walk(tree.body)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
