"""The splitter on news text: the cases that trip splitters up, and offsets that always hold."""

from __future__ import annotations

import pytest
from sift.index.split import split_sentences

CASES = [
    # abbreviations
    (
        "The U.S. Senate voted on Tuesday. It passed.",
        ["The U.S. Senate voted on Tuesday.", "It passed."],
    ),
    ("Mr. Smith met Mrs. Jones. They talked.", ["Mr. Smith met Mrs. Jones.", "They talked."]),
    (
        "Gen. Mark Milley spoke. Lt. Col. Vindman listened.",
        ["Gen. Mark Milley spoke.", "Lt. Col. Vindman listened."],
    ),
    (
        "The deal was signed on Jan. 5 in Geneva. Talks resume in Feb.",
        ["The deal was signed on Jan. 5 in Geneva.", "Talks resume in Feb."],
    ),
    (
        "The vote ends at 8 p.m. on Friday. Results follow.",
        ["The vote ends at 8 p.m. on Friday.", "Results follow."],
    ),
    (
        "Shares of Apple Inc. rose 3%. Analysts were surprised.",
        ["Shares of Apple Inc. rose 3%.", "Analysts were surprised."],
    ),
    (
        "Dr. Ruth Ann Wells of St. Mary's hospital said so. She left.",
        ["Dr. Ruth Ann Wells of St. Mary's hospital said so.", "She left."],
    ),
    ("He moved to Washington, D.C. last year.", ["He moved to Washington, D.C. last year."]),
    (
        "The company, e.g. its board, agreed. Others did not.",
        ["The company, e.g. its board, agreed.", "Others did not."],
    ),
    # quotes that close a sentence
    (
        '"We will not retreat," said Lee. The talks ended.',
        ['"We will not retreat," said Lee.', "The talks ended."],
    ),
    (
        '"Is this the end?" she asked. Nobody answered.',
        ['"Is this the end?" she asked.', "Nobody answered."],
    ),
    ('He said: "It is over." Then he left.', ['He said: "It is over."', "Then he left."]),
    (
        "“We are ready,” the minister said. “So are we.”",
        ["“We are ready,” the minister said.", "“So are we.”"],
    ),
    ("'It failed,' he said. She agreed.", ["'It failed,' he said.", "She agreed."]),
    # decimals, numbers, money
    (
        "Growth was 2.5 per cent. Inflation fell to 3.1%.",
        ["Growth was 2.5 per cent.", "Inflation fell to 3.1%."],
    ),
    (
        "The firm earned $1.13bn (£600m) in the quarter. Shares rose.",
        ["The firm earned $1.13bn (£600m) in the quarter.", "Shares rose."],
    ),
    ("Version 3.11.7 shipped. It is faster.", ["Version 3.11.7 shipped.", "It is faster."]),
    (
        "At least 1,000 were injured. The number may rise.",
        ["At least 1,000 were injured.", "The number may rise."],
    ),
    # initials
    ("J. R. R. Tolkien wrote it. It sold well.", ["J. R. R. Tolkien wrote it.", "It sold well."]),
    (
        "George W. Bush spoke first. Then others did.",
        ["George W. Bush spoke first.", "Then others did."],
    ),
    (
        "The F.B.I. opened an inquiry. It is ongoing.",
        ["The F.B.I. opened an inquiry.", "It is ongoing."],
    ),
    # ellipses
    (
        "He paused... and then went on. Nobody moved.",
        ["He paused... and then went on.", "Nobody moved."],
    ),
    # other final punctuation
    ("Why now? Nobody knows! The vote is on.", ["Why now?", "Nobody knows!", "The vote is on."]),
    # datelines
    (
        "NEW DELHI: At least 100 soldiers have been killed. Lee said so.",
        ["NEW DELHI: At least 100 soldiers have been killed.", "Lee said so."],
    ),
    (
        "LONDON (Reuters) - Britain's economy grew. Officials were pleased.",
        ["LONDON (Reuters) - Britain's economy grew.", "Officials were pleased."],
    ),
    (
        "WASHINGTON, Jan. 5 (AP) — The Senate met. It adjourned.",
        ["WASHINGTON, Jan. 5 (AP) — The Senate met.", "It adjourned."],
    ),
    # headlines and paragraphs
    (
        "Ad sales boost Time Warner profit\n\nQuarterly profits jumped 76%. Sales rose.",
        ["Ad sales boost Time Warner profit", "Quarterly profits jumped 76%.", "Sales rose."],
    ),
    (
        "Ad sales boost Time Warner profit\nQuarterly profits jumped 76%.",
        ["Ad sales boost Time Warner profit", "Quarterly profits jumped 76%."],
    ),
    (
        "First paragraph ends here.\n\nSecond one starts here.",
        ["First paragraph ends here.", "Second one starts here."],
    ),
    (
        "A paragraph with no final stop\n\nThe next paragraph.",
        ["A paragraph with no final stop", "The next paragraph."],
    ),
    # hard-wrapped text must not be cut at its line ends
    (
        "The minister said the government would review\nthe decision before the end of the year.",
        ["The minister said the government would review\nthe decision before the end of the year."],
    ),
    (
        "Officials met with Mr.\nSmith on Monday. He agreed.",
        ["Officials met with Mr.\nSmith on Monday.", "He agreed."],
    ),
    # unicode
    (
        "Le président a parlé. Emoji 🎉 stay inside. Done.",
        ["Le président a parlé.", "Emoji 🎉 stay inside.", "Done."],
    ),
    ("No final punctuation at all", ["No final punctuation at all"]),
    ("   \n\n  Leading whitespace is not a sentence.  ", ["Leading whitespace is not a sentence."]),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[1][0][:30] for c in CASES])
def test_tricky_news_cases(text: str, expected: list[str]) -> None:
    assert [s.text for s in split_sentences(text)] == expected


@pytest.mark.parametrize(("text", "_"), CASES, ids=[c[1][0][:30] for c in CASES])
def test_offsets_point_into_the_text(text: str, _: list[str]) -> None:
    sentences = split_sentences(text)
    assert [s.position for s in sentences] == list(range(len(sentences)))
    for s in sentences:
        assert text[s.start : s.end] == s.text
        assert s.text == s.text.strip() and s.text
    starts = [s.start for s in sentences]
    assert starts == sorted(starts)


def test_empty_text_has_no_sentences() -> None:
    assert split_sentences("") == []
    assert split_sentences(" \n\n\t ") == []
