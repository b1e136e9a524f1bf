"""What free-text styles and remix words are screened against, as data: words and phrases, and look-alike letters.

Entries are written as ``pipeline.safety.text.normalise`` leaves text (lower case, plain Latin letters, one space
between words) and match whole words only, so "Essex", "therapist" or "cocktail" never match "sex", "rapist" or
"cock". A word that is innocent in a headshot more often than not ("breast pocket", "baby blue", "comic strip",
"Harris tweed", "musk", "primary school teacher") is left out, or listed only inside a phrase that is not.

Public figures are a short list of very famous names rather than a model: the bot runs offline and torch-free, and no
maintained name detector ships its weights in a small wheel. A listed name refuses the request, whatever surrounds it.
"""

from __future__ import annotations

__all__ = ["CONFUSABLES", "LEET", "MINOR", "MINOR_AGE_UNITS", "NUMBER_WORDS", "PUBLIC_FIGURES", "SEXUAL"]

SEXUAL = frozenset(
    {
        # Nudity.
        "nude", "nudes", "nudity", "naked", "nakedness", "topless", "bottomless", "undressed", "unclothed",
        "nipple", "nipples", "boobs", "boobies", "tits", "titties", "penis", "vagina", "genitals", "genitalia",
        "pussy", "cock", "butt naked", "no clothes", "without clothes", "no clothing", "without clothing",
        "wearing nothing", "see through", "seethrough", "wet t shirt", "wet tshirt",
        # Sex and porn.
        "sex", "sexy", "sexual", "sexualised", "sexualized", "porn", "porno", "pornographic", "pornography",
        "nsfw", "xxx", "erotic", "erotica", "hentai", "orgasm", "orgy", "cum", "cumshot", "blowjob", "handjob",
        "masturbate", "masturbating", "masturbation", "erection", "aroused", "horny", "seductive", "sensual",
        "lingerie", "fetish", "bdsm", "bondage", "dominatrix", "stripper", "striptease", "onlyfans", "playboy",
        "pinup", "pin up", "boudoir", "camgirl", "escort", "hooker", "prostitute",
        # Sexual violence.
        "rape", "raped", "rapist", "molest", "molested", "molestation",
    }
)  # fmt: skip

MINOR = frozenset(
    {
        "child", "children", "kid", "kids", "kiddo", "toddler", "infant", "newborn", "preteen", "preteens",
        "tween", "tweens", "teen", "teens", "teenage", "teenager", "teenagers", "underage", "schoolgirl",
        "schoolboy", "schoolgirls", "schoolboys", "high schooler", "loli", "lolita", "shota", "jailbait",
        "little girl", "little boy", "young girl", "young boy", "as a baby", "pedo", "paedo", "pedophile",
        "paedophile",
    }
)  # fmt: skip

# "<age> years old", "<age>yo", "aged <age>" under 18 are a minor too, in digits or in words.
NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
}  # fmt: skip
MINOR_AGE_UNITS = ("years old", "year old", "yrs old", "yr old", "yo", "y o")

PUBLIC_FIGURES = frozenset(
    {
        # Politicians and heads of state.
        "donald trump", "trump", "joe biden", "biden", "barack obama", "obama", "michelle obama", "kamala harris",
        "hillary clinton", "bill clinton", "vladimir putin", "putin", "xi jinping", "volodymyr zelensky",
        "zelensky", "zelenskyy", "narendra modi", "emmanuel macron", "macron", "olaf scholz", "angela merkel",
        "merkel", "justin trudeau", "trudeau", "boris johnson", "rishi sunak", "keir starmer", "king charles",
        "queen elizabeth", "prince harry", "meghan markle", "pope francis", "kim jong un", "netanyahu",
        "benjamin netanyahu", "erdogan", "bolsonaro", "hitler", "adolf hitler",
        # Business.
        "elon musk", "mark zuckerberg", "zuckerberg", "jeff bezos", "bezos", "bill gates", "warren buffett",
        "steve jobs", "tim cook", "sam altman",
        # Entertainment and sport.
        "taylor swift", "beyonce", "rihanna", "kim kardashian", "kardashian", "kanye west", "oprah",
        "oprah winfrey", "emma watson", "scarlett johansson", "margot robbie", "zendaya", "jennifer lawrence",
        "jennifer aniston", "angelina jolie", "brad pitt", "tom cruise", "tom hanks", "leonardo dicaprio",
        "dicaprio", "keanu reeves", "dwayne johnson", "johnny depp", "will smith", "morgan freeman",
        "ariana grande", "selena gomez", "billie eilish", "justin bieber", "bieber", "lady gaga", "shakira",
        "madonna", "dua lipa", "ed sheeran", "drake", "eminem", "cristiano ronaldo", "lionel messi",
        "lebron james", "michael jordan", "serena williams",
    }
)  # fmt: skip

# Letters that look Latin but are not (Cyrillic, Greek, a few others NFKC keeps apart), as the Latin letter they
# pass for. Capitals are listed where they look like another letter than their lower case does (Greek "Ν" is an N,
# "ν" a v); the rest are read after case folding.
CONFUSABLES = str.maketrans(
    {
        # Capitals.
        "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o", "Р": "p", "С": "c", "Т": "t",
        "У": "y", "Х": "x", "Ѕ": "s", "І": "i", "Ј": "j", "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h",
        "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n", "Ο": "o", "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x",
        # Cyrillic.
        "а": "a", "в": "b", "е": "e", "ё": "e", "з": "3", "і": "i", "ї": "i", "ј": "j", "к": "k", "м": "m",
        "н": "h", "о": "o", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "ԁ": "d", "ԛ": "q",
        "ԝ": "w", "ү": "y", "һ": "h", "ɡ": "g", "п": "n", "г": "r", "ь": "b", "д": "d",
        # Greek.
        "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
        "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "μ": "u", "ς": "s", "σ": "o",
        # Latin letters from other alphabets' blocks and IPA.
        "ı": "i", "ȷ": "j", "ɑ": "a", "ɩ": "i", "ʏ": "y", "ᴜ": "u", "ß": "ss", "ø": "o", "đ": "d", "ł": "l",
    }
)  # fmt: skip

# Digits and signs that stand for letters ("p0rn", "$exy", "n@ked"). "1" and "|" read as "i" and as "l": the screen
# tries both readings.
LEET = {"0": "o", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i", "€": "e", "+": "t"}
