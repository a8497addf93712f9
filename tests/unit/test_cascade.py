"""gateway/cascade.py: the offline review of a local answer."""

from __future__ import annotations

import pytest

from gateway.cascade import mean_logprob, review, wrong_calculations

GOOD = "Janet has 16 - 3 = 13 eggs.\nShe bakes with 4: 13 - 4 = 9.\nShe sells them: 9 * $2 = $18.\nShe makes $18."


@pytest.mark.parametrize("text, wrong", [
    (GOOD, 0),
    ("16 - 3 = 12", 1),
    ("$4 x 5 = $20 and 1,000 + 200 = 1,300", 1),
    ("2 + 3 * 4 = 14", 0),                 # precedence
    ("2 + 3 * 4 = 20", 1),
    ("10 / 4 = 2.5, 7 ÷ 2 = 3.5", 0),
    ("1 / 3 = 0.33", 0),                   # rounded results pass
    ("The ratio 3:2 = good", 0),           # not arithmetic: ignored
    ("x = 5 and y = 2", 0),
    ("9 / 0 = 1", 0),                      # undefined: ignored, not flagged
])
def test_wrong_calculations(text, wrong):
    assert wrong_calculations(text) == wrong


@pytest.mark.parametrize("prompt, text, finish, reason", [
    ("How much does she make?", GOOD, "stop", None),
    ("Say hi", "Hi!", "stop", None),
    ("Say hi", "   ", "stop", "empty answer"),
    ("Write an essay", "It was a", "length", "answer cut at the token limit"),
    ("Tell me", "I'm sorry, but I can't help with that.", "stop", "the local model declined"),
    ("How much does she make?", "She makes 16 - 3 = 12 dollars.", "stop",
     "1 calculation(s) in the answer do not add up"),
    ("How many apples are left?", "Some apples are left.", "stop",
     "the prompt asks for an amount and the answer ends without a number"),
    ("Describe apples", "Apples are red.", "stop", None),
])
def test_review(prompt, text, finish, reason):
    assert review(prompt, text, finish) == reason


@pytest.mark.parametrize("text, wrong", [
    ("5 * ($5.00 * 5 + $6.00 * 1 + $8.00 * 2) = $125", 1),   # brackets: 5 * 47 = 235
    ("5 * ($5.00 * 5 + $6.00 * 1 + $8.00 * 2) = $235", 0),
    ("2 * 30 - 12 = 60 - 12 = 48", 0),                      # an intermediate step is no result
    ("1,350 + 6 * 350 = 1,350 + 2,100 = 3,450", 0),
    ("12.8 / (1 - 3/5) = 12.8 / 0.4 = 32", 0),
    ("x * 4 + 8 = 40", 0),                                  # an equation with an unknown
    ("(x/2 + 4 - 6) + 8 = 25", 0),
    ("tax 5 + 3 = 9", 1),                                   # "x" ending a word is no multiplication
    ("80/100 \\* 2 \\* 20 = 64", 1),                          # Markdown-escaped operators
    ("3/4 = 75% of it", 0),                                 # a percentage is another unit
    ("-5 + 3 = -2", 0),
    ("<<48+15=63>>63 millilitres", 0),
])
def test_wrong_calculations_in_running_text(text, wrong):
    assert wrong_calculations(text) == wrong


@pytest.mark.parametrize("prompt, text, reason", [
    ("How much?", "First, 15 + 25 = <<15+2", "answer cut at the token limit"),
    ("How much?", "The total is 4 *", "answer cut at the token limit"),
    ("How many ice cubes does she add?", "50 / 13 = 3.85, so she adds 3.85",
     "the prompt asks how many and the answer's final number is not whole"),
    ("How many ice cubes does she add?", "50 / 13 = 3.85, so about 4 (rounding up).\n#### 4",
     "the prompt asks for an exact amount and the answer approximates or assumes"),
    ("How much does he pay?", "Assuming a 10% tip, he pays 11 dollars.",
     "the prompt asks for an exact amount and the answer approximates or assumes"),
    ("How much does it cost in total?", "It costs 2.5 dollars.", None),   # not a count: fractions are fine
    ("Explain rounding", "Rounding to the nearest ten turns 47 into 50.", None),  # no amount asked
])
def test_review_of_amounts(prompt, text, reason):
    assert review(prompt, text) == reason


@pytest.mark.parametrize("text", [
    "(" * 2000 + "1" + ")" * 2000 + " + 1 = 3",   # nesting deeper than Python's parser allows
    "1+" * 20000 + "1 = 5",                        # a left side longer than the review reads
    "<<" * 20000,
])
def test_pathological_answers_are_reviewed_without_error(text):
    assert review("How many?", text) in (None, "answer cut at the token limit",
                                         "the prompt asks for an amount and the answer ends without a number")


@pytest.mark.parametrize("logprobs, limit, reason", [
    ((-0.1, -0.3, -0.2), -1.5, None),
    ((-0.5, -3.0, -2.5), -1.5, "the local model was unsure of its answer (mean token log-probability -2.00 < -1.5)"),
    ((-0.5, -3.0, -2.5), None, None),   # the check turned off
    (None, -1.5, None),                  # a backend that reports none: not judged
])
def test_review_of_confidence(logprobs, limit, reason):
    assert review("Tell me a story", "Once upon a time.", "stop", mean_logprob(logprobs), limit) == reason


def test_specific_reasons_come_before_confidence():
    assert review("How many?", "16 - 3 = 12", "stop", -5.0, -1.5) == "1 calculation(s) in the answer do not add up"


def test_mean_logprob():
    assert mean_logprob((-0.5, -1.0, -1.5)) == -1.0 and mean_logprob(None) is None and mean_logprob(()) is None
