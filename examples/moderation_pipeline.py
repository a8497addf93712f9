#!/usr/bin/env python3
"""Moderate a batch of texts through the gateway: a local model first, the cloud when in doubt, a
human when still unclear. Fails closed: nothing is approved unless a model answered exactly SAFE.

Input is JSONL ({"id": ..., "text": ...} per line; a plain string line is accepted too) from a file
or stdin. Prints one verdict per item and the run's real cost and savings from the gateway's numbers.

    python examples/moderation_pipeline.py items.jsonl [--json] [--gateway-url URL] [--api-key KEY]
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from dataclasses import asdict, dataclass

from gateway_client import Gateway, GatewayError, add_arguments, description, plural, read_text

LABELS = ("SAFE", "UNSAFE", "UNSURE")
# The whole answer must be one label (a trailing period allowed): "UNSAFE" never reads as "SAFE", and
# "SAFE, but..." or an explanation is malformed.
STRICT = re.compile(r"^\s*(SAFE|UNSAFE|UNSURE)\s*\.?\s*$", re.IGNORECASE)
SYSTEM = ("You are a content moderator. Classify the user's text. Answer with exactly one word: SAFE if it "
          "is acceptable, UNSAFE if it contains harassment, hate, violence, sexual content involving minors, "
          "self-harm encouragement or illegal instructions, UNSURE if you cannot tell. No other words.")


@dataclass
class Verdict:
    id: str
    verdict: str            # approved | rejected | review
    decided_by: str         # local | cloud | human
    label: str | None
    models: list[str]
    cost: float
    notes: str = ""


def parse_label(answer: str) -> str | None:
    m = STRICT.match(answer or "")
    return m.group(1).upper() if m else None


def ask(gw: Gateway, text: str, **route) -> tuple[str | None, dict | None, str]:
    """(label or None, the gateway's answer, a note)."""
    try:
        body = gw.chat(text, system=SYSTEM, temperature=0, max_tokens=5, **route)
    except GatewayError as exc:
        return None, None, str(exc)
    label = parse_label(body["response"])
    return label, body, "" if label else f"malformed answer from {body['model']}"


def moderate(gw: Gateway, item_id: str, text: str) -> tuple[Verdict, list[dict]]:
    answers = []
    label, body, note = ask(gw, text, strategy="local-only")
    if body:
        answers.append(body)
    if label in ("SAFE", "UNSAFE"):
        return _verdict(item_id, label, "local", answers, note), answers
    label, body, note2 = ask(gw, text, model="cloud")   # ambiguous, malformed or failed: escalate
    if body:
        answers.append(body)
    if label in ("SAFE", "UNSAFE"):
        return _verdict(item_id, label, "cloud", answers, note), answers
    notes = "; ".join(n for n in (note, note2, "UNSURE" if label == "UNSURE" else "") if n)
    return Verdict(item_id, "review", "human", label, [a["model"] for a in answers],
                   sum(a["cost"] for a in answers), notes), answers


def _verdict(item_id: str, label: str, by: str, answers: list[dict], note: str) -> Verdict:
    return Verdict(item_id, "approved" if label == "SAFE" else "rejected", by, label,
                   [a["model"] for a in answers], sum(a["cost"] for a in answers), note)


def read_items(stream) -> list[tuple[str, str]]:
    items = []
    for n, line in enumerate(stream, 1):
        line = line.strip()
        if not line:
            continue
        try:
            data = json.loads(line)
        except ValueError:
            data = line
        if isinstance(data, dict) and isinstance(data.get("text"), str):
            items.append((str(data.get("id", n)), data["text"]))
        elif isinstance(data, str):
            items.append((str(n), data))
        else:
            raise SystemExit(f"error: line {n}: expected {{\"id\", \"text\"}} or a JSON string")
    return items


def main() -> int:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("input", nargs="?", help="JSONL file (default: stdin; examples/data/items.jsonl to try)")
    parser.add_argument("--json", action="store_true", help="one JSON verdict per line")
    add_arguments(parser)
    args = parser.parse_args()
    gw = Gateway.from_args(args)
    items = read_items(io.StringIO(read_text(parser, args.input)) if args.input else sys.stdin)
    price_in, price_out = gw.cloud_reference_prices()
    verdicts, cloud_only = [], 0.0
    for item_id, text in items:
        verdict, answers = moderate(gw, item_id, text)
        verdicts.append(verdict)
        # What the final answer would have cost on the cloud model, from the gateway's token counts.
        if answers:
            usage = answers[-1]["usage"]
            cloud_only += usage["input_tokens"] * price_in + usage["output_tokens"] * price_out
        if args.json:
            print(json.dumps(asdict(verdict)))
        else:
            print(f"{verdict.id}: {verdict.verdict.upper():<8} by {verdict.decided_by:<5} "
                  f"({' -> '.join(verdict.models) or 'no model'}){'  ' + verdict.notes if verdict.notes else ''}")
    cost = sum(v.cost for v in verdicts)
    counts = {k: sum(v.verdict == k for v in verdicts) for k in ("approved", "rejected", "review")}
    summary = {"items": len(verdicts), **counts, "cost_usd": round(cost, 6), "cloud_only_usd": round(cloud_only, 6),
               "savings_usd": round(cloud_only - cost, 6),
               "decided_locally": sum(v.decided_by == "local" for v in verdicts)}
    print(json.dumps({"summary": summary}) if args.json else
          f"\n{plural(summary['items'], 'item')}: {counts['approved']} approved, {counts['rejected']} rejected, "
          f"{counts['review']} for human review; {summary['decided_locally']} decided locally. "
          f"Cost ${cost:.6f}, cloud-only ${cloud_only:.6f}, saved ${cloud_only - cost:.6f}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
