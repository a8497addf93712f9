"""What an upstream call costs when it does not end in a whole answer.

A provider bills what it processed, whether or not the gateway received a complete answer: a call that
timed out after generating for minutes, a stream cut half-way and retried, a stream whose client left.
Every upstream call carries a Meter that its backend keeps current while the call runs (the counts the
upstream reported, the text that arrived), and a failed or abandoned call is charged from it:

- the upstream reported counts, or text arrived: input as reported (else the prompt's upper bound),
  output as reported or as received, whichever is more;
- the upstream may have worked but told nothing (a read timeout, an unreadable answer, a connection
  cut after the request went out): the worst case, as reserved before the call;
- the request never reached it, or it refused it with an error status: nothing.

Pure: no I/O. Dispatch and the service turn the Usage into dollars at the model's prices.
"""

from __future__ import annotations

from dataclasses import dataclass

from .chat import Usage

CHARS_PER_TOKEN = 4  # English text averages about four characters a token in every tokenizer we price


@dataclass
class Meter:
    """One upstream call's known usage so far. The backend fills it in as the wire reports it."""
    input_tokens: int | None = None    # as the upstream reported it (Anthropic: message_start)
    output_tokens: int | None = None   # as the upstream reported it, cumulative
    pieces: int = 0                    # pieces of text received (each is at least one token)
    chars: int = 0
    streamed: bool = False             # read as a stream: progress (pieces) would have shown
    cache: tuple[int, int, int] = (0, 0, 0)  # of input_tokens: cache reads, writes (5m), writes (1h)

    def received(self, text: str) -> None:
        if text:
            self.pieces += 1
            self.chars += len(text)

    @property
    def known(self) -> bool:
        """The upstream worked on this call and said (or showed) how much."""
        return self.input_tokens is not None or self.output_tokens is not None or self.pieces > 0

    @property
    def output_received(self) -> int:
        return max(self.output_tokens or 0, self.pieces, -(-self.chars // CHARS_PER_TOKEN))


def charged_usage(meter: Meter, billable: bool, input_bound: int, output_cap: int) -> Usage | None:
    """What a call that ended without its final usage is charged for; None: nothing was billed.

    input_bound: no tokenizer counts more input tokens than this (ChatRequest.input_tokens_bound);
    output_cap: the max_tokens the call was sent with.
    """
    if meter.known:
        inputs = meter.input_tokens if meter.input_tokens is not None else input_bound
        cache = meter.cache if meter.input_tokens is not None else (0, 0, 0)
        return Usage(inputs, min(meter.output_received, output_cap) if output_cap else meter.output_received, *cache)
    if billable:
        return Usage(input_bound, output_cap)
    return None
