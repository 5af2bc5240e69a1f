# Whether a name a student used can stand for a contract name. Pure Python, standard library only,
# and no `from __future__` import: the kernel runtime may run this text after its own, in the
# kernel's private probe namespace, as well as the grader importing it.
#
# Discovery (Probe.find) may bind a contract name to an object found by its type or signature
# when the contract name itself is not defined. That is right for `softmax_fn` or `crossEntropy`,
# and wrong for a notebook of another assignment whose `rbf_matrix(X1, X2, gamma)` happens
# to take three arguments like `cross_entropy(w, X, y)`. The rule: a discovered object is bound only
# when `name_relates(contract, found)`, or when it passes the part's basic shape check.
import re as _naming_re

_NAMING_WORD = _naming_re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_NAMING_MIN_WORD = 3
"""Shorter words (x, w, k, nn) say nothing on their own; they count only as initials."""
_NAMING_MIN_PREFIX = 4
"""Two words sharing this many first letters are the same word inflected (result, results)."""


def name_words(name):
    """The lower-case words of an identifier: `CIFARPairView` → cifar, pair, view; `W_init` → w, init."""
    return [word.lower() for word in _NAMING_WORD.findall(name) if not word.isdigit()]


def _naming_abbreviates(short, long):
    """`trn` for train, `tst` for test, `grd` for gradient: same first letter, then letters in order."""
    if len(short) >= len(long) or short[0] != long[0]:
        return False
    rest = iter(long[1:])
    return all(letter in rest for letter in short[1:])


def _naming_words_relate(a, b):
    if len(a) < _NAMING_MIN_WORD or len(b) < _NAMING_MIN_WORD:
        return False
    if a.startswith(b) or b.startswith(a) or _naming_abbreviates(a, b) or _naming_abbreviates(b, a):
        return True
    prefix = 0
    for x, y in zip(a, b):
        if x != y:
            break
        prefix += 1
    return prefix >= _NAMING_MIN_PREFIX


def _naming_initials(words):
    return "".join(word[0] for word in words)


def name_relates(contract, found):
    """True when `found` shares something with `contract`: a word (or its stem, or its consonant
    abbreviation), a word inside the other written without separators, or the initials of its words.

    `cross_loss` relates to `crossLoss`, `loss_cross`, `my_loss`, `crossloss` and `cl`; `rbf_matrix`
    relates to `matrix`, `rbf_m` and `rm`; `results` to `result`; `cross_loss` does not relate
    to `rbf_matrix`, `f` or `solve`.
    """
    if not contract or not found:
        return False
    if contract.lower() == found.lower():
        return True
    ours, theirs = name_words(contract), name_words(found)
    if any(_naming_words_relate(a, b) for a in ours for b in theirs):
        return True
    joined_ours, joined_theirs = "".join(ours), "".join(theirs)
    if any(len(w) >= _NAMING_MIN_WORD and w in joined_theirs for w in ours):
        return True
    if any(len(w) >= _NAMING_MIN_WORD and w in joined_ours for w in theirs):
        return True
    if len(ours) >= 2 and joined_theirs == _naming_initials(ours):
        return True
    return len(theirs) >= 2 and joined_ours == _naming_initials(theirs)
