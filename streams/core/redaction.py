"""Transcript redaction: payment cards, phone numbers, e-mail addresses and configured ID patterns
are replaced by one placeholder word each ([CARD], [PHONE], [EMAIL], [ID]) before a transcript
leaves the worker. Pure: a word list in, a word list out.

Whisper writes numbers both ways ("4111 1111", "four one one one", "double one"), so the words
are first normalised: each run of consecutive number-like words becomes digits, and every
character of the normalised text remembers which word it came from, so a match found in the
text maps back to an exact span of words (and so to exact timings).

The backends strip each word, and Whisper's word boundaries put punctuation at the start of a
word when no space came before it: "415-555-2671." arrives as "415", "-555", "-2671." and
"gmail.com" may arrive as "gmail", ".com". So a word such as "-555", ",015" or ".2671" (or a
lone "-" or ",") inside a number run continues that run as if it were one written token, and a
word such as ".com" or "@gmail.com" joins the previous word when looking for an address.

What counts as what:
- card: a whole run of 13-19 digits that passes the Luhn check. Inside a longer run (a card
  followed by its expiry, say) we also take a 13-19 digit window that starts and ends on word
  boundaries, passes Luhn and starts with 2-6 (the card networks' major-industry digits): a long
  run offers many windows and Luhn alone lets one random window in ten through.
- phone: phonenumbers' matcher (leniency VALID, default region from the config) on each run.
- email: a written address, or the spoken form ("john dot smith at example dot com", "Anna.org at
  gmail.com", "anna at gmail .com"); a spoken "at" only counts inside a full address shape whose
  top-level domain is a common one and whose domain does not start with a word such as "the" or
  "this", so "meet at the office" or "there at five dot thirty" never becomes an e-mail.
- id: each configured regex on the normalised text (spoken digits already digits).
Tokens with ":", "/", "$", "%" or letters (times, dates, prices, "3rd") are never part of a run.
Spans are claimed in the order email, card, phone, id, one span per word: a later match that
touches an already claimed word is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import phonenumbers

from callstt.models.text.results import Word, join_words
from callstt.schemas.errors import CallsttError

KINDS = ("card", "phone", "email", "id")  # "id" = the configured patterns
PLACEHOLDERS = {"card": "[CARD]", "phone": "[PHONE]", "email": "[EMAIL]", "id": "[ID]"}

SPOKEN_DIGITS = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9"}
MULTIPLIERS = {"double": 2, "triple": 3}
NUMERIC_TOKEN = re.compile(r"\+?\(?\d[\d().,-]*")  # "4532-0151", "(555)", "+44", "1,299"
# The rest of a written number after Whisper split it at its punctuation ("415", "-555", "-2671").
CONTINUATION = re.compile(r"[-,.]\d[\d().,-]*")
TRAILING = ".,;:!?"  # punctuation Whisper attaches to the end of a word
STOPS = set(".?!;")  # a run ends at a sentence end; a "," may just separate digit groups

EMAIL = re.compile(r"(?<![\w.'%+-])[a-z0-9][a-z0-9._%+-]*@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+"
                   r"([a-z]{2,})(?![\w-])", re.IGNORECASE)
EMAIL_SPOKEN = {"at": "@", "@": "@", "dot": ".", "underscore": "_", "dash": "-", "hyphen": "-"}
# A spoken address is only believed with one of these endings: "there at five dot thirty" is not one.
SPOKEN_TLDS = {"com", "org", "net", "edu", "gov", "io", "co", "uk", "us", "ca", "au", "de", "fr",
               "es", "it", "nl", "ie", "in", "info", "biz", "me"}
# ...nor with a domain that starts with one of these: "look at this .com bubble" is not one either.
NOT_A_DOMAIN = {"the", "a", "an", "this", "that", "these", "those", "my", "your", "our", "his", "her",
                "their", "its", "some", "any", "no", "every", "all", "least", "most"}
# A word starting with one of these follows the previous one without a space in the text.


class RedactionConfigError(CallsttError, ValueError):
    """A redaction setting that cannot be used: an unknown kind, a bad regex or region."""


@dataclass(frozen=True)
class RedactionConfig:
    kinds: frozenset[str] = frozenset()  # empty = redaction off
    patterns: tuple[str, ...] = ()  # regexes for kind "id", matched on the normalised text
    phone_region: str = "US"  # region assumed for numbers said without a country code

    def __post_init__(self) -> None:
        unknown = sorted(set(self.kinds) - set(KINDS))
        if unknown:
            raise RedactionConfigError(f"unknown redaction kind(s) {unknown}; known: {', '.join(KINDS)}, all")
        for pattern in self.patterns:
            try:
                re.compile(pattern)
            except re.error as error:
                raise RedactionConfigError(f"redaction pattern `{pattern}` does not compile: {error}") from None
        # Patterns with "id" off would look like protection while doing nothing, and the reverse too.
        if self.patterns and "id" not in self.kinds:
            raise RedactionConfigError("redaction patterns are set but kind 'id' is not enabled")
        if "id" in self.kinds and not self.patterns:
            raise RedactionConfigError("redaction kind 'id' needs at least one pattern")
        if "phone" in self.kinds and self.phone_region not in phonenumbers.SUPPORTED_REGIONS:
            raise RedactionConfigError(f"unknown phone region {self.phone_region!r}")

    @classmethod
    def parse(cls, kinds: str, patterns: str = "", phone_region: str = "US") -> RedactionConfig:
        """kinds: "card,phone,email", "all" or "" (off); patterns separated by ";;"."""
        names = {name.strip().lower() for name in kinds.split(",") if name.strip()}
        pattern_list = tuple(p.strip() for p in patterns.split(";;") if p.strip())
        if "all" in names:  # "all" takes "id" only when there is something to match with it
            names = (names - {"all"}) | {k for k in KINDS if k != "id" or pattern_list}
        return cls(frozenset(names), pattern_list, phone_region.strip().upper())


@dataclass(frozen=True)
class Redaction:
    words: list[Word]  # each redacted span replaced by one placeholder word
    counts: dict[str, int] = field(default_factory=dict)  # kind -> spans redacted (kinds found only)

    @property
    def text(self) -> str:
        """The words joined as Whisper joins its text (models.text.results.join_words)."""
        return join_words(word.text for word in self.words)


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _core(word: Word) -> str:
    return word.text.strip().rstrip(TRAILING)


def _digits(core: str) -> tuple[str, bool] | None:
    """A number-like word's rendering and whether it was spoken ("four", "four-one"), else None."""
    if NUMERIC_TOKEN.fullmatch(core):
        return core, False
    parts = core.lower().split("-")
    if all(part in SPOKEN_DIGITS for part in parts):
        return "".join(SPOKEN_DIGITS[part] for part in parts), True
    return None


class MappedText:
    """Text built piece by piece; owner[k] is the index of the word char k came from (-1: a joining space)."""

    def __init__(self) -> None:
        self.chars: list[str] = []
        self.owner: list[int] = []

    def add(self, text: str, index: int) -> None:
        self.chars.extend(text)
        self.owner.extend([index] * len(text))

    def words_of(self, start: int, end: int) -> tuple[int, int] | None:
        owners = [o for o in self.owner[start:end] if o >= 0]
        return (min(owners), max(owners)) if owners else None

    def __str__(self) -> str:
        return "".join(self.chars)


def normalise(words: Sequence[Word]) -> tuple[MappedText, list[tuple[int, int]]]:
    """The text with number runs rewritten as digits, and each run's (start, end) in it."""
    out, runs = MappedText(), []
    cores = [_core(w) for w in words]
    digit_at = [_digits(core) for core in cores] + [None]
    run_start: int | None = None
    joins = False  # the previous run item was "+", "-", a glued "," or "double": no space after it
    spoken_open = False  # the previous run item was a spoken digit with no pause after it
    last_spoken = False  # the previous run item was spoken at all

    for i, word in enumerate(words):
        low, found, in_run = cores[i].lower(), digit_at[i], run_start is not None
        nxt = digit_at[i + 1]
        glued = False  # this item is the rest of the previous written number: no space before it
        if found:
            text, spoken = found
        elif in_run and CONTINUATION.fullmatch(cores[i]):
            text, spoken, glued = cores[i], False, True  # "-555" after "415", ",015" after "4532"
        elif in_run and nxt and word.text.strip() == ",":
            if last_spoken or not out.chars[-1].isdigit():  # "four one five , five": a pause
                spoken_open = False
                continue
            text, spoken, glued = ",", False, True  # "4532 , 015": as if written "4532,015"
        elif low in MULTIPLIERS and nxt and len(nxt[0]) == 1 and nxt[0].isdigit():
            text, spoken = nxt[0] * (MULTIPLIERS[low] - 1), True  # "double five": one 5 here, one there
        elif low in ("oh", "o") and in_run and out.chars[-1].isdigit() and nxt:
            text, spoken = "0", True  # "oh" is a zero only between digits
        elif low in ("dash", "hyphen", "-") and in_run and nxt:
            text, spoken = "-", False
        elif low in ("plus", "+") and not in_run and nxt:
            text, spoken = "+", False
        else:  # an ordinary word: it ends any run and is kept as written
            if in_run:
                runs.append((run_start, len(out.chars)))
                run_start = None
            if out.chars:
                out.add(" ", -1)
            out.add(word.text.strip(), i)
            continue
        # Spoken digits said together form one group ("four one five" -> "415"); a pause, or a
        # written token, starts a new one, which keeps the grouping phonenumbers relies on.
        if not in_run or not (glued or joins or text == "-" or (spoken and spoken_open)):
            if out.chars:
                out.add(" ", -1)
        if not in_run:
            run_start = len(out.chars)
        out.add(text, i)
        pause = word.text.strip()[len(cores[i]):]  # the punctuation this word ended with
        joins, spoken_open = text in ("+", "-", ",") or low in MULTIPLIERS, spoken and not pause
        last_spoken = spoken
        # "415. 555. 2671.": the model sometimes ends a phone number's 3-digit groups with a period;
        # one before another written group is no sentence end ("born in 1998. 415 ..." still is).
        between_groups = pause == "." and not spoken and len(text) == 3 and text.isdigit() and nxt and not nxt[1]
        if STOPS & set(pause) and not between_groups:
            runs.append((run_start, len(out.chars)))
            run_start = None
    if run_start is not None:
        runs.append((run_start, len(out.chars)))
    return out, runs


def _cards(text: MappedText, runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    spans = []
    for start, end in runs:
        digits = [(c, o) for c, o in zip(text.chars[start:end], text.owner[start:end]) if c.isdigit()]
        number = "".join(c for c, _ in digits)
        if 13 <= len(number) <= 19 and luhn_valid(number):
            spans.append((digits[0][1], digits[-1][1]))
        if len(number) <= 19:
            continue
        # A longer run: windows that start and end on word boundaries, leftmost first, longest first.
        firsts = [k for k in range(len(digits)) if k == 0 or digits[k - 1][1] != digits[k][1]]
        lasts = {k for k in range(len(digits)) if k + 1 == len(digits) or digits[k + 1][1] != digits[k][1]}
        free = 0  # digits before this are inside a card already found
        for first in (k for k in firsts if number[k] in "23456"):
            for last in range(min(first + 19, len(digits)) - 1, first + 11, -1):
                if first >= free and last in lasts and luhn_valid(number[first:last + 1]):
                    spans.append((digits[first][1], digits[last][1]))
                    free = last + 1
                    break
    return spans


def _phones(text: MappedText, runs: list[tuple[int, int]], region: str) -> list[tuple[int, int]]:
    spans = []
    for start, end in runs:
        chunk = "".join(text.chars[start:end])
        for match in phonenumbers.PhoneNumberMatcher(chunk, region, leniency=phonenumbers.Leniency.VALID):
            span = text.words_of(start + match.start, start + match.end)
            if span:
                spans.append(span)
    return spans


# A number the model heard with a digit missing or added is no longer a valid phone number or
# Luhn-valid card, but the caller said one: a digit run that directly follows a phone or card cue
# ("my phone number is", "call me on", "my Visa") is that kind when its length fits. Order and
# ticket numbers have no such cue, so they stay.
PHONE_CUES = {"phone", "mobile", "cell", "cellphone", "telephone", "landline", "call", "reach", "text", "whatsapp"}
CARD_CUES = {"card", "visa", "mastercard", "amex", "maestro", "discover", "credit", "debit"}
CUE_DISTANCE = 4  # words between the cue and the number ("phone number is", "card number is")
CUED_DIGITS = {"phone": (7, 15), "card": (12, 19)}


def _cued(words: Sequence[Word], text: MappedText, runs: list[tuple[int, int]], kind: str) -> list[tuple[int, int]]:
    cues = PHONE_CUES if kind == "phone" else CARD_CUES
    shortest, longest = CUED_DIGITS[kind]
    spans = []
    for start, end in runs:
        owners = [o for c, o in zip(text.chars[start:end], text.owner[start:end]) if c.isdigit()]
        if not owners or not shortest <= len(owners) <= longest:
            continue
        before = [_core(words[i]).lower() for i in range(max(owners[0] - CUE_DISTANCE, 0), owners[0])]
        if cues & set(before):
            spans.append((owners[0], owners[-1]))
    return spans


# The model sometimes glues a spoken "at" into one word: "Mary.jonesatgmail.com". Believed when the
# name has a dot in it or the domain is a known mail provider ("whatsapp.com" stays a website).
GLUED_AT = re.compile(r"^([a-z0-9_%+-]+(?:\.[a-z0-9_%+-]+)*)at([a-z0-9-]+)((?:\.[a-z0-9-]+)*\.[a-z]{2,})$", re.I)
MAIL_PROVIDERS = {"gmail", "googlemail", "yahoo", "hotmail", "outlook", "live", "icloud", "aol", "proton",
                  "protonmail", "gmx", "zoho", "yandex", "mail"}


def _glued_address(core: str) -> bool:
    match = GLUED_AT.match(core)
    return bool(match) and ("." in match.group(1) or match.group(2).lower() in MAIL_PROVIDERS)


def _emails(words: Sequence[Word]) -> list[tuple[int, int]]:
    out = MappedText()
    glued = False  # the previous word was a spoken "at"/"dot"/...: the next one joins it
    for i, word in enumerate(words):
        raw = word.text.strip()
        core = raw.strip(TRAILING + "\"'()<>")
        # ".com" after "gmail", ".berg" after "anna", "@gmail.com" after "anna": one piece with it.
        attached = raw[:1] in (".", "@") and raw[1:2].isalnum()
        if attached and not core.startswith(raw[0]):
            core = raw[0] + core
        spoken = EMAIL_SPOKEN.get(core.lower())
        ended = i > 0 and words[i - 1].text.rstrip().endswith(tuple(TRAILING))  # "home. Dot com": two sentences
        if out.chars and (ended or not (glued or spoken or attached)):
            out.add(" ", -1)
        out.add(spoken or core, i)
        glued = bool(spoken)
    spans = []
    for match in EMAIL.finditer(str(out)):
        span = out.words_of(match.start(), match.end())
        if not span:
            continue
        said = any(_core(words[i]).lower() == "at" for i in range(span[0], span[1] + 1))
        domain = match.group(0).rsplit("@", 1)[1].lower()
        if not said or (match.group(1).lower() in SPOKEN_TLDS and domain.split(".")[0] not in NOT_A_DOMAIN):
            spans.append(span)
    # Glued addresses, over the joined pieces: the model may split one into words such as
    # "Mary.johnsatgmail" + ".com" or "Mary" + ".johnsatgmail.com".
    taken = {i for start, end in spans for i in range(start, end + 1)}
    for piece in re.finditer(r"\S+", str(out)):
        span = out.words_of(piece.start(), piece.end())
        if span and not taken & set(range(span[0], span[1] + 1)) and _glued_address(piece.group(0).rstrip(TRAILING)):
            spans.append(span)
    return sorted(spans)


def redact(words: Sequence[Word], config: RedactionConfig) -> Redaction:
    if not config.kinds:
        return Redaction(list(words))
    claimed = dict(_spans(words, config, normalise(words)))  # first word of a span -> (kind, last word)
    result, counts, i = [], {}, 0
    while i < len(words):
        if i not in claimed:
            result.append(words[i])
            i += 1
            continue
        kind, last = claimed[i]
        span = words[i:last + 1]
        lead = span[0].text[:len(span[0].text) - len(span[0].text.lstrip())]
        tail = span[-1].text.rstrip()
        tail = tail[len(tail.rstrip(TRAILING)):]  # keep "[CARD]." when the span ended a sentence
        result.append(Word(text=lead + PLACEHOLDERS[kind] + tail, start=span[0].start, end=span[-1].end,
                           probability=min(w.probability for w in span)))
        counts[kind] = counts.get(kind, 0) + 1
        i = last + 1
    return Redaction(result, counts)


def _spans(words: Sequence[Word], config: RedactionConfig,
           numbers: tuple[MappedText, list[tuple[int, int]]]) -> list[tuple[int, tuple[str, int]]]:
    """The spans redaction replaces, as (first word, (kind, last word)), in the order found;
    `numbers` is `normalise(words)`."""
    found: list[tuple[str, tuple[int, int]]] = []
    if "email" in config.kinds:
        found += [("email", span) for span in _emails(words)]
    text, runs = numbers
    if "card" in config.kinds:
        found += [("card", span) for span in _cards(text, runs)]
    if "phone" in config.kinds:
        found += [("phone", span) for span in _phones(text, runs, config.phone_region)]
    for kind in ("card", "phone"):  # misheard numbers after a cue, once the exact rules have had their say
        if kind in config.kinds:
            found += [(kind, span) for span in _cued(words, text, runs, kind)]
    if "id" in config.kinds:
        for pattern in config.patterns:
            matches = re.finditer(pattern, str(text))
            found += [("id", span) for m in matches if m.end() > m.start() and (span := text.words_of(*m.span()))]

    claimed: list[tuple[int, tuple[str, int]]] = []
    taken: set[int] = set()
    for kind, (first, last) in found:  # in priority order: the first claim on a word wins
        if not taken & set(range(first, last + 1)):
            claimed.append((first, (kind, last)))
            taken.update(range(first, last + 1))
    return claimed


# --- Interims -----------------------------------------------------------------------------------
# An interim shows an utterance while it is still being spoken, so a number or an address in it
# may be half said: "my card number is 4111 1111" is no card yet, and the stable prefix would keep
# those digits for good. An interim of a call with redaction on therefore ends before the first
# word that the final could still redact: any number run (written or spoken digits: a card, a
# phone or an ID in the making) when card, phone or id is on; any address-shaped word when email
# is on. What follows comes with the final, which redaction decides on the whole utterance.
ADDRESS_SHAPED = re.compile(r"@|\w\.\w|^\.\w")  # "@gmail", "john.smith", "gmail.com", ".com"
SPOKEN_ADDRESS = {"dot", "underscore"}
# A spoken "at" near the end of the words may still become an address ("write to anna at gmail");
# one followed by this many words that made no address is just "at".
OPEN_AT_WORDS = 4


def _address_shaped(words: Sequence[Word], index: int) -> bool:
    core = words[index].text.strip().strip(TRAILING + "\"'()<>").lower()
    if core in SPOKEN_ADDRESS or ADDRESS_SHAPED.search(core):
        return True
    if core != "at":
        return False
    following = words[index + 1:]
    return len(following) < OPEN_AT_WORDS and not (following and _core(following[0]).lower() in NOT_A_DOMAIN)


def shown_in_interim(words: Sequence[Word], config: RedactionConfig) -> int:
    """How many leading words an interim of a call with `config` may show: all of them with
    redaction off, else those before the first word that redaction removes, or could still remove
    once the utterance is complete (see above)."""
    if not config.kinds:
        return len(words)
    numbers = normalise(words)
    held = [first for first, _ in _spans(words, config, numbers)]
    if config.kinds & {"card", "phone", "id"}:
        text, runs = numbers
        held += [span[0] for start, end in runs if (span := text.words_of(start, end))]
    if "email" in config.kinds:
        held += [index for index in range(len(words)) if _address_shaped(words, index)]
    return min(held, default=len(words))
