"""The cascade strategy's answer check: is a local answer good enough to send, or should the cloud model
answer instead? Pure and offline: no model call, ~0.1 ms for a GSM8K answer (linear in its length).

`review(prompt, text, finish_reason)` returns None to accept, or the reason to escalate:
- an empty answer, one cut at the token limit (the backend says so, or the text stops mid-expression),
  a refusal;
- arithmetic in the answer that does not add up (its own "a + b = c" and "(a + b) * c = d", recomputed);
- where the prompt asks for an amount: no number in the last line, a count ("how many") whose final
  number is not whole, or an answer that approximates or assumes ("≈", "rounding", "assuming") where an
  exact amount is wanted;
- low confidence: where the backend reports the sampled tokens' log-probabilities (Ollama 0.12.11+,
  OpenAI-compatible servers), a mean below `routing.cascade.min_mean_logprob` in models.yaml.
Measured on GSM8K with the weak model's real answers (scripts/routing/eval_router.py, router "cascade"): it
rejects 12.1 % of them, 90 % of those really wrong. The checks were refined looking at the even-numbered
half of GSM8K only; on the odd half, never looked at, it rejects 14.1 % (89 % wrong), which recovers PGR
0.445 of the quality gap: one operating point, twice what the heuristic recovers at that cloud share.
"""

from __future__ import annotations

import ast
import operator
import re

_NUM = r"-?\$?\d[\d,]*(?:\.\d+)?"
# The right side of a calculation: "= 36", "= $22", "=36"; not "= 75%" (a percentage is another unit) nor
# "= 60 - 12" (an intermediate step: its own "=" follows).
_RESULT = re.compile(rf"=[ \t]*((?>{_NUM}))(?![\d%]|[ \t]*\\?[-+*/×÷(]|[ \t]*[x×][ \t]*[\d$(])")
# What the left side of a calculation may hold, scanned back from its "=": numbers, operators, brackets.
_EXPRESSION_CHARS = frozenset("0123456789$,.()+-*/x×÷ \t\\")  # "\\*": Markdown-escaped
_REFUSAL = re.compile(r"^(?:i'?m sorry|sorry|i (?:can(?:no|')t|am unable|won'?t)|as an ai)\b", re.IGNORECASE)
_ASKS_AMOUNT = re.compile(r"\bhow (?:many|much|long|far|old)\b|\bwhat (?:is|was) the (?:total|number|amount|cost)\b",
                          re.IGNORECASE)
_ASKS_COUNT = re.compile(r"\bhow many\b", re.IGNORECASE)
_HEDGE = re.compile(r"≈|\bapproximately\b|\bround(?:ed|ing)? (?:up|down|to)\b|\bassum(?:e|ing)\b|"
                    r"\bnot (?:given|specified|enough information)\b", re.IGNORECASE)
# The last line of an answer cut short: an open bracket or calculator annotation, or a trailing operator.
_CUT = re.compile(r"(?:<<[^>]*|[-+*/×÷=(,]\s*)$")
_TAIL = 200  # the cut check reads the answer's last characters only
_LONGEST = 160  # the longest left side read: bounds the parser's work (and depth) on any answer
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def review(prompt: str, text: str, finish_reason: str | None = "stop", confidence: float | None = None,
           min_mean_logprob: float | None = None) -> str | None:
    """None: send the local answer. Otherwise why the cloud model should answer instead. `confidence` is
    the answer's mean_logprob(), None where the backend reported no log-probabilities."""
    answer = text.strip()
    if not answer:
        return "empty answer"
    if finish_reason == "length" or _CUT.search(answer[-_TAIL:]):
        return "answer cut at the token limit"
    if _REFUSAL.match(answer):
        return "the local model declined"
    wrong = wrong_calculations(answer)
    if wrong:
        return f"{wrong} calculation(s) in the answer do not add up"
    if _ASKS_AMOUNT.search(prompt):
        final = _NUMBER.findall(answer.splitlines()[-1])
        if not final:
            return "the prompt asks for an amount and the answer ends without a number"
        if _ASKS_COUNT.search(prompt) and not float(final[-1].replace(",", "")).is_integer():
            return "the prompt asks how many and the answer's final number is not whole"
        if _HEDGE.search(answer):
            return "the prompt asks for an exact amount and the answer approximates or assumes"
    if confidence is not None and min_mean_logprob is not None and confidence < min_mean_logprob:
        return (f"the local model was unsure of its answer (mean token log-probability {confidence:.2f} "
                f"< {min_mean_logprob:g})")
    return None


def mean_logprob(logprobs: tuple[float, ...] | None) -> float | None:
    """The answer's mean token log-probability (its length-normalised likelihood under the model that wrote
    it; 0 is certain), or None when the backend reported none."""
    return round(sum(logprobs) / len(logprobs), 4) if logprobs else None


def wrong_calculations(text: str) -> int:
    """How many "expression = result" calculations in the text are arithmetically wrong."""
    wrong = 0
    for m in _RESULT.finditer(text):
        value = _left_side(text, m.start())
        if value is None:
            continue
        stated = float(m.group(1).replace(",", "").replace("$", ""))
        if abs(value - stated) > 0.01 + 1e-6 * abs(value):
            wrong += 1
    return wrong


def _left_side(text: str, equals: int) -> float | None:
    """The value of the arithmetic expression that ends at text[equals] (the "="), or None."""
    start, limit = equals, max(0, equals - _LONGEST)
    while start > limit and text[start - 1] in _EXPRESSION_CHARS:
        start -= 1
    if start == limit and start > 0 and text[start - 1] in _EXPRESSION_CHARS:
        return None  # longer than the review reads: no judgement on a part of it
    if start < equals and text[start] in "x×" and start > 0 and text[start - 1].isalpha():
        start += 1  # the end of a word ("tax 5 + 3"), not a multiplication
    span = text[start:equals]
    # The longest expression that parses, after at most a bracket, "$" or spaces: "(5 + 3" is read as
    # "5 + 3"; "x * 4 + 8" (an unknown) is no calculation at all.
    for n, ch in enumerate(span):
        if ch not in " \t($":
            return _evaluate(span[n:]) if n == 0 or span[n - 1] in " \t($" else None
        value = _evaluate(span[n:])
        if value is not None:
            return value
    return None


def _evaluate(expr: str) -> float | None:
    """+ - * / and brackets over numbers, through Python's parser but no eval; None if anything else, or
    if there is no operator (a lone number is not a calculation)."""
    source = re.sub(r"(?<=[\d\s)])[x×](?=[\s\d$(])", "*", expr).replace("÷", "/").replace("$", "").replace("\\", "")
    source = re.sub(r"(?<=\d),(?=\d{3}\b)", "", source).strip()
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, RecursionError, MemoryError):
        return None
    if not isinstance(tree.body, ast.BinOp):
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
    except (ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None
