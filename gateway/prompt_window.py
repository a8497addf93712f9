"""The part of a prompt the routers read: all of it, or for a long one its first 3 KB and last 1 KB.

Instructions and code sit at the start, the question after a pasted document at the end; every routing
signal saturates within a few KB, and the window bounds decision time (scripts/bench/bench_router.py).
"""

HEAD_CHARS, TAIL_CHARS = 3072, 1024


def scan_window(prompt: str) -> str:
    """The prompt itself when short (the same object), else its head and tail joined by a newline."""
    if len(prompt) <= HEAD_CHARS + TAIL_CHARS:
        return prompt
    return prompt[:HEAD_CHARS] + "\n" + prompt[-TAIL_CHARS:]
