"""Word helpers shared by the text expert (which words to weigh) and the explanations (which to quote)."""

from __future__ import annotations

STOPWORDS = frozenset("""a an the and or but if of to in on at by for with from as is are was were be been am i you he she
it we they me him her us them my your his its our their this that these those do does did have has had will would
can could shall should may might must not no so than then there here what which who whom how why when where just
very really oh well yeah ok okay i'm it's you're that's don't can't won't i've i'll he's she's we're they're
there's what's let's isn't aren't wasn't didn't doesn't gonna wanna""".split())


def bare_word(word: str) -> str:
    """A word without surrounding punctuation, with typographic apostrophes made plain."""
    return word.replace("’", "'").replace("‘", "'").strip(".,;:!?\"'()[]")


#: Function words that still carry emotion: always weighed, never skipped.
NEGATIONS = frozenset("not no never don't can't won't isn't aren't wasn't didn't doesn't nothing nobody".split())


def weighable(word: str) -> bool:
    """Whether occlusion should weigh ``word``: content words and negations (function words cost a full
    classifier pass each and are never quoted)."""
    w = bare_word(word).lower()
    return bool(w) and (w in NEGATIONS or w not in STOPWORDS)
