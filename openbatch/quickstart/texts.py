"""The three input files of the quickstart: openings of public-domain novels (ASCII)."""

from __future__ import annotations

TEXTS: dict[str, str] = {
    "taskdata0.txt": """\
A Tale of Two Cities, by Charles Dickens (1859)

It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of
foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of
Light, it was the season of Darkness, it was the spring of hope, it was the winter of despair, we
had everything before us, we had nothing before us, we were all going direct to Heaven, we were
all going direct the other way -- in short, the period was so far like the present period, that
some of its noisiest authorities insisted on its being received, for good or for evil, in the
superlative degree of comparison only.
""",
    "taskdata1.txt": """\
Pride and Prejudice, by Jane Austen (1813)

It is a truth universally acknowledged, that a single man in possession of a good fortune, must be
in want of a wife.

However little known the feelings or views of such a man may be on his first entering a
neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is
considered the rightful property of some one or other of their daughters.

"My dear Mr. Bennet," said his lady to him one day, "have you heard that Netherfield Park is let
at last?"

Mr. Bennet replied that he had not.

"But it is," returned she; "for Mrs. Long has just been here, and she told me all about it."

Mr. Bennet made no answer.

"Do you not want to know who has taken it?" cried his wife impatiently.

"You want to tell me, and I have no objection to hearing it."

This was invitation enough.
""",
    "taskdata2.txt": """\
Moby-Dick; or, The Whale, by Herman Melville (1851)

Call me Ishmael. Some years ago -- never mind how long precisely -- having little or no money in
my purse, and nothing particular to interest me on shore, I thought I would sail about a little
and see the watery part of the world. It is a way I have of driving off the spleen and regulating
the circulation. Whenever I find myself growing grim about the mouth; whenever it is a damp,
drizzly November in my soul; whenever I find myself involuntarily pausing before coffin
warehouses, and bringing up the rear of every funeral I meet; and especially whenever my hypos
get such an upper hand of me, that it requires a strong moral principle to prevent me from
deliberately stepping into the street, and methodically knocking people's hats off -- then, I
account it high time to get to sea as soon as I can.
""",
}
