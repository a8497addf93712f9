"""gateway/cascade.py: the offline review of a local answer."""

from __future__ import annotations

import pytest

from gateway.cascade import review, wrong_calculations

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
