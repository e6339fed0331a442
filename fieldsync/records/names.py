"""Normalised keys for person names and villages, and fuzzy name similarity. Pure functions.

Owns the rule "participants match when normalised name, birth year and normalised village
agree; close fuzzy matches become candidates" as far as names and villages go: what counts
as "the same spelling" (`normalise_name`, `normalise_village`), how alike two different
spellings are (`name_similarity`), and where "alike" starts (`FUZZY_CANDIDATE_THRESHOLD`).
Standard library and rapidfuzz only; no database, no Flask.

A key is lower-case ASCII-ish tokens (Latin letters and digits; letters of other scripts
pass through) joined by single spaces, sorted, so token order never matters. It holds no
`|`, so callers may join keys with it. The empty key means "nothing usable was written":
two empty keys are not evidence that two records agree.

How a key is made, in this order:
1. Apostrophes, quotes and spacing accents are deleted (`Ma'rifat`, `Oʻktam`, `Ma´rifat`);
   then NFKC and casefold.
2. Hyphens and dashes are deleted too, so a hyphenated compound is one token (`Kara-Balta` =
   `Karabalta`, `Nur-Aiym` = `Nuraiym`); every other punctuation mark or symbol separates
   tokens (`с.Кант`, `A.Asanova`).
3. Cyrillic (Russian, Kyrgyz, and the Uzbek/Kazakh letters that turn up) is romanised
   letter by letter; Latin diacritics are dropped (`Aigül`, `Ömürbek`), with ş ç č š ž
   spelled out first so they are not flattened to s, c, z.
4. Each token is folded (`_FOLDS`) so the spellings people actually use for one name agree.
5. Names only: `uulu` / `kyzy` ("son of" / "daughter of") is joined to the father's name it
   follows; villages only: generic settlement words are dropped and compound parts joined.
6. Tokens are sorted. The whole is repeated on its own output until nothing changes, so a
   key normalises to itself.
"""
import functools
import itertools
import re
import unicodedata

from rapidfuzz import fuzz

# Two different keys of one birth year and village scoring at least this are a candidate
# for a coordinator. One wrong letter scores 92-96 on an ordinary full name ("aigul asanova"
# vs "aigil asanova": 92.3) and 87.5 on the shortest real ones ("jana kim" vs "iana kim":
# Яна spelled Jana, a spelling the folds deliberately leave apart); different names that
# merely share letters stay at or below 86.7 ("aizada asankizi" vs "aizada usenkizi",
# "nurlan asanov" vs "nurlan asanbaev": 85.7). A false candidate costs a coordinator one
# look, a missed one leaves a person counted twice, so the line sits between the two.
# One letter apart is a candidate even when both are real names (Marat / Murat, Asanov /
# Asanova): only a person can tell a typo from a brother.
FUZZY_CANDIDATE_THRESHOLD = 87.0

# Above this many tokens the permutation search in name_similarity gives way to a sort.
_MAX_PERMUTED_TOKENS = 6

_CYRILLIC = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e",
    # ё is usually typed as е, and е is what passports print: both become e.
    "ё": "e", "ж": "zh", "з": "z", "и": "i", "й": "y", "к": "k", "л": "l", "м": "m",
    "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f",
    "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh",
    # Щербаков is written Sherbakov as often as Shcherbakov; no two names differ by щ/ш.
    "щ": "sh",
    # The hard and soft signs are not written in Latin spellings (Айгуль = Aigul).
    "ъ": "", "ь": "",
    "ы": "y", "э": "e", "ю": "yu", "я": "ya",
    # Kyrgyz: people without a Kyrgyz keyboard type н, о, у for ң, ө, ү, and Latin spellings
    # use n, o, u (Жаңыл = Жаныл = Janyl), so each folds onto its plain letter.
    "ң": "n", "ө": "o", "ү": "u",
    # Uzbek and Kazakh letters. ў becomes u because Russian-style spellings (Уктам) are what
    # the programme's forms receive, not Uzbek Latin (Oʻktam).
    "ў": "u", "қ": "k", "ғ": "g", "ҳ": "kh", "һ": "kh", "ә": "a", "і": "i", "ұ": "u",
    "ї": "i", "є": "e", "ґ": "g",
}

# Latin letters whose marks carry sound; the rest lose their marks (ü -> u, ö -> o, ğ -> g).
_LATIN_SPECIAL = {
    "ş": "sh", "š": "sh", "ç": "ch", "č": "ch", "ž": "zh", "ı": "i", "ə": "a", "ł": "l",
    "ø": "o", "đ": "d", "æ": "ae", "œ": "oe",
}

# Deleted inside words: every apostrophe, quote and accent people type in names.
_DELETE = set("'\"`´ʼʻʹʺˈˊˋ′″‘’‚‛“”„‟«»‹›") | {"\u0301", "\u0300"}

_VOWEL = "aeiou"
_CONSONANT = "bcdfghjklmnpqrstvwxz"

# Each fold: why it is safe is that no two common names in the programme's population are
# told apart only by it, while each one unites spellings of one name that really occur.
# Order matters: later folds see the output of earlier ones.
_FOLDS = [
    # ж: zh (passports), j (Kyrgyz habit), dzh/dj (Russian Дж-): Zhyldyz = Jyldyz = Джылдыз.
    (re.compile("dzh|dj|zh"), "j"),
    (re.compile("shch"), "sh"),
    # x at the start is Uzbek Latin х (Xurshida = Khurshida); inside a word it is Alexander,
    # Maxim (= Aleksandr, Maksim).
    (re.compile("^x"), "kh"), (re.compile("x"), "ks"),
    # c on its own is an English k (Victoria = Viktoriya). ц stays ts: almost no one writes
    # Tsoi as "Coi", so folding c onto ts would buy nothing and cost Victoria.
    (re.compile("c(?!h)"), "k"),
    (re.compile("w"), "v"),  # German spellings: Jusupow = Yusupov
    (re.compile("q"), "k"),  # Uzbek Latin қ: Qodirov = Кодиров
    # y/i: ы, й and и are y or i at random in Latin (Baktygul/Baktigul, Aygul/Aigul,
    # Chynara/Chinara) and no names differ only by them.
    (re.compile("y"), "i"),
    # j before u is ю or жу, and those are one name everywhere they meet (Jusupov = Yusupov =
    # Iusupov; Жусуп = Юсуп; Жумабек = Jumabek). j before a/e/o is NOT folded: Жанна and Яна
    # (Zhanna / Yana) are different women, and folding ja onto ya would make them one.
    (re.compile("ju"), "iu"),
    # j after a vowel and not before one can only be й (Ajgul = Aigul, Tsoj = Tsoi).
    (re.compile(f"(?<=[{_VOWEL}])j(?![{_VOWEL}])"), "i"),
    # ю after a consonant is how Russian spells Kyrgyz ү (Айгюль = Айгүл, Гюльнара, Бюбюсара)
    # and Latin often drops its i (Lyudmila = Ludmila).
    (re.compile(f"(?<=[{_CONSONANT}])iu"), "u"),
    # ё after a consonant, spelled yo/io (Fyodor, Pyotr, Alyona, Artyom = Fedor, Petr,
    # Alena, Artem). Not word-initial: Ёлдош/Yoldosh stays as written.
    (re.compile(f"(?<=[{_CONSONANT}])io"), "e"),
    # е at the start or after a vowel is often spelled ye (Yermek = Ermek, Yelena = Elena,
    # Turgunbayev = Turgunbaev, Aliyev = Aliev).
    (re.compile(f"(^|(?<=[{_VOWEL}]))ie"), "e"),
    # х: kh and a bare h are one sound (Khalima = Halima, Rakhmat = Rahmat). h inside sh/ch
    # and kh is left alone; Latin "sh" therefore always means ш (Ishak reads as Ишак, not
    # Исхак: that spelling is ambiguous in itself).
    (re.compile("(?<![sck])h"), "kh"),
    # Doubled letters: Kyrgyz long vowels and Russian double consonants come and go in
    # spelling (Nookat = Nokat, Meerim = Merim, Assel = Asel, Alla = Ala, Zhanna = Zhana,
    # uulu = ulu); no two common names differ only by one. This also closes ii from ий
    # (Dmitriy = Dmitri) and iia from ия (Mariya = Maria).
    (re.compile(r"([a-z])\1+"), r"\1"),
]
# Deliberately NOT folded:
# - ng -> n: Jangyl would meet Janyl, but Inga would meet Inna.
# - final -ia/-ya -> -a: Jamilya would meet Jamila, but Valeriya would meet Valera and
#   Mariya Mara. Those spellings are left to name_similarity (Jamilya/Jamila scores 92).
# - consonant + ie -> e: Grigoriev would meet Grigorev, but Daniel would meet Danel.
# - male/female endings (-ov/-ova, -ev/-eva), uulu/kyzy: they tell people apart.
# - ts -> c: see above.

# "son of" / "daughter of": the word belongs to the father's name before it, so
# "Bakyt uulu Nurlan" and "Nurlan Bakyt uulu" agree and "Nurlan uulu Bakyt" (his son) does not.
_PATRONYMIC_RAW = ["уулу", "кызы", "uulu", "kyzy", "qizi", "ulu", "kizi"]

# Words for the kind of settlement, not its name (ru / ky / en / uz), and their abbreviations.
_GENERIC_VILLAGE_RAW = [
    "село", "с", "сел", "поселок", "посёлок", "пос", "п", "пгт", "город", "гор", "г",
    "деревня", "дер", "д", "аул", "кишлак", "айыл", "айылы", "кыштак", "кыштагы", "шаар",
    "шаары", "шаарча", "шаарчасы", "village", "vill", "vil", "v", "town", "city",
    "settlement", "aiyl", "ayil", "kyshtak", "kishlak", "shaar", "shaary", "qishloq",
    "qishlogi", "shahar", "shahri",
]

# Parts of Kyrgyz place names that are written hyphenated, joined or apart (Кара-Балта,
# Карабалта, Кара Балта). A first part joins the next token, a last part the one before,
# so every spelling gives one token.
_VILLAGE_FIRST_PARTS_RAW = [
    "ак", "кара", "көк", "кок", "кызыл", "сары", "боз", "ала", "жаңы", "жаны", "эски", "чоң",
    "чон", "кичи", "орто", "беш", "уч", "үч", "эки", "төрт", "жети", "тогуз", "таш", "кум",
    "ысык", "ат", "базар", "жалал",
]
_VILLAGE_LAST_PARTS_RAW = [
    "абад", "ата", "суу", "тоо", "булак", "коргон", "көл", "кол", "куль", "жол", "сай",
    "башы", "арык", "кия", "кыя", "дөбө", "төбө", "bulak", "abad", "suu", "too",
]


def _prepare(text: str) -> str:
    """Steps 1-3: one string of romanised, lower-case tokens separated by spaces."""
    # Quotes and spacing accents go before NFKC, which would turn ´ and ¨ into a space and a
    # combining mark and so split Ma´rifat in two.
    text = "".join(c for c in text if c not in _DELETE and unicodedata.category(c) != "Sk")
    text = unicodedata.normalize("NFKC", text).casefold()
    out = []
    for ch in text:
        if ch in _DELETE:
            continue
        if ch in _CYRILLIC:
            out.append(_CYRILLIC[ch])
            continue
        if ch in _LATIN_SPECIAL:
            out.append(_LATIN_SPECIAL[ch])
            continue
        category = unicodedata.category(ch)
        if category in ("Pd", "Cf"):
            continue  # hyphens and dashes join a compound into one word; Cf is soft hyphens, ZWJ
        if category[0] in "PSZC":
            out.append(" ")
            continue
        out.append(ch)
    text = "".join(out)
    # Now only non-Cyrillic letters with marks are left to flatten (ü, ö, ğ, é, й typed as
    # и + combining breve, ё as е + diaeresis).
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    again = []
    for ch in unicodedata.normalize("NFC", stripped):
        again.append(_CYRILLIC.get(ch, ch))  # и/е freed from their marks
    return "".join(again)


def _fold(token: str) -> str:
    for pattern, replacement in _FOLDS:
        token = pattern.sub(replacement, token)
    return token


@functools.lru_cache(maxsize=1 << 14)
def _fold_all(token: str) -> str:
    """Fold until stable: a fold can expose work for an earlier one (Абдыюсуп)."""
    for _ in range(10):
        folded = _fold(token)
        if folded == token:
            return token
        token = folded
    return token


def _tokens(text: str) -> list[str]:
    return list(_tokens_of(text))


@functools.lru_cache(maxsize=1 << 14)
def _tokens_of(text: str) -> tuple[str, ...]:
    return tuple(t for t in (_fold_all(w) for w in _prepare(text).split()) if t)


def _keys(words) -> frozenset:
    keys = set()
    for word in words:
        keys.update(_tokens(word))
    return frozenset(keys)


_PATRONYMIC = _keys(_PATRONYMIC_RAW)
_GENERIC_VILLAGE = _keys(_GENERIC_VILLAGE_RAW)
_VILLAGE_FIRST_PARTS = _keys(_VILLAGE_FIRST_PARTS_RAW)
_VILLAGE_LAST_PARTS = _keys(_VILLAGE_LAST_PARTS_RAW)


def _bind(tokens: list[str], leading: frozenset, trailing: frozenset) -> list[str]:
    """Join every `leading` word to the token after it and every `trailing` word to the token
    before it. One that stands where it cannot (a leading word last, a trailing word first)
    joins its only neighbour anyway, in its natural place: otherwise sorting could later put
    a token after it and a second normalisation would give a different key."""
    tokens = list(tokens)
    while len(tokens) > 1:
        for i, token in enumerate(tokens):
            if token in leading:
                j = i + 1 if i + 1 < len(tokens) else i - 1
                merged = token + tokens[j]
                break
            if token in trailing:
                j = i - 1 if i > 0 else i + 1
                merged = tokens[j] + token
                break
        else:
            return tokens
        low, high = min(i, j), max(i, j)
        tokens[low:high + 1] = [_fold_all(merged)]  # the seam may hold a doubled letter
    return tokens


def _settle(text: str, finish) -> str:
    """Apply one round of key making until it no longer changes anything."""
    key = " ".join(sorted(finish(_tokens(text))))
    for _ in range(10):
        again = " ".join(sorted(finish(_tokens(key))))
        if again == key:
            break
        key = again
    return key


def _name_tokens(tokens: list[str]) -> list[str]:
    return _bind(tokens, frozenset(), _PATRONYMIC)


def _village_tokens(tokens: list[str]) -> list[str]:
    kept = [t for t in tokens if t not in _GENERIC_VILLAGE]
    return _bind(kept, _VILLAGE_FIRST_PARTS, _VILLAGE_LAST_PARTS)


@functools.lru_cache(maxsize=1 << 14)
def normalise_name(text: str | None) -> str:
    """The canonical key of a person's name: equal keys are the same name however it was
    written (Cyrillic or any common Latin spelling, any case, spacing, punctuation or word
    order). `Айгүл Асанова`, `Aigul Asanova`, `ASANOVA  Aigul` and `Асанова Айгуль` give one
    key; `Aigul Asanov` and `Aizada Asanova` give others. None or blank gives ""."""
    if not text:
        return ""
    return _settle(text, _name_tokens)


def normalise_village(text: str | None) -> str:
    """The canonical key of a village (or town): the name folding of `normalise_name`, without
    words for the kind of settlement (`с.`, `село`, `айылы`, `village`, `г.`, `шаары`, `пгт`,
    …) and with compound names as one token, so `с. Кант`, `Kant`, `Кант айылы` and
    `KANT village` agree, as do `Кара-Балта`, `Karabalta` and `г. Кара Балта`. Word order does
    not matter. None, blank or only generic words give ""."""
    if not text:
        return ""
    return _settle(text, _village_tokens)


def name_similarity(a: str, b: str) -> float:
    """How alike two names are, 0..100, after `normalise_name` (so raw names and keys both do).

    Like rapidfuzz's token_sort_ratio, but instead of comparing the two alphabetical orders it
    tries every order of the second name's tokens against the first and keeps the best, so a
    typo in a first letter that changes the sort (`Ulan Osmonov` / `Ulan Usmonov`: "osmonov
    ulan" against "ulan usmonov") does not hide the likeness. Each order is also compared
    with the spaces taken out, so a name written as one word or two (`Nur Aiym` / `Nuraiym`)
    still scores high. Past six tokens it falls back to token_sort_ratio. Equal keys score
    100; an empty key scores 0 against anything. Works on village keys too: normalising one
    again as a name leaves it as it is unless it holds a word uulu or kyzy."""
    return key_similarity(normalise_name(a), normalise_name(b))


def key_similarity(key_a: str, key_b: str) -> float:
    """`name_similarity` of two name keys (`normalise_name` results, which it leaves as they
    are): person matching compares stored keys, and normalising them again only cost time."""
    if not key_a or not key_b:
        return 0.0
    if key_a == key_b:
        return 100.0
    tokens_a, tokens_b = key_a.split(), key_b.split()
    if max(len(tokens_a), len(tokens_b)) > _MAX_PERMUTED_TOKENS:
        return float(fuzz.token_sort_ratio(key_a, key_b))
    best = 0.0
    # Each side's orders against the other's sorted order: n! + m! comparisons, not n! * m!,
    # and enough to line up any word of one with its counterpart in the other.
    for fixed, moving in ((tokens_a, tokens_b), (tokens_b, tokens_a)):
        spaced, compact = " ".join(fixed), "".join(fixed)
        for order in itertools.permutations(moving):
            best = max(best, fuzz.ratio(spaced, " ".join(order)),
                       fuzz.ratio(compact, "".join(order)))
    return float(best)
