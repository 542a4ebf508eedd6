"""Mobile numbers (valid per phonenumbers) in several written formats, and device IMEIs."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import numpy as np
import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from mobility.config import iso2_of
from mobility.errors import ConfigError

_MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)


@dataclass(frozen=True)
class Numbers:
    """Parallel arrays: one row per number, three spellings of it."""

    e164: np.ndarray
    national: np.ndarray  # digits only, with the national prefix ("09171234567")
    spaced: np.ndarray  # the national format as phonenumbers writes it ("0917 123 4567")

    def __len__(self) -> int:
        return len(self.e164)

    def formats(self) -> np.ndarray:
        """(n, 3) array of spellings, column order as params.MSISDN_FORMAT_SHARES."""
        return np.stack([self.e164, self.national, self.spaced], axis=1)


def is_valid_mobile(number: phonenumbers.PhoneNumber) -> bool:
    return phonenumbers.is_valid_number(number) and phonenumbers.number_type(number) in _MOBILE_TYPES


def _candidates(rng: np.random.Generator, prefix: str, length: int, size: int) -> np.ndarray:
    free = length - len(prefix)
    return int(prefix) * 10**free + rng.integers(0, 10**free, size=size, dtype=np.int64)


def _valid(cc: int, nsns: np.ndarray) -> np.ndarray:
    return np.array([is_valid_mobile(phonenumbers.PhoneNumber(country_code=cc, national_number=int(v))) for v in nsns],
                    dtype=bool)


def mobile_numbers(rng: np.random.Generator, iso3: str, n: int, exclude: Collection[int] = ()) -> Numbers:
    """``n`` distinct valid mobile numbers of a country, drawn around its example mobile number; none of the
    national numbers in ``exclude`` (another operator's)."""
    region = iso2_of(iso3)
    example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    if example is None or example.country_code is None or example.italian_leading_zero:
        raise ConfigError(f"cannot draw mobile numbers for {iso3}", hint="choose another home or corridor country")
    cc, nsn = example.country_code, str(example.national_number)
    # Keep the shortest prefix of the example that still yields valid numbers often enough.
    prefix, rate = nsn, 1.0
    for keep in range(1, len(nsn)):
        trial = _valid(cc, _candidates(rng, nsn[:keep], len(nsn), 400)).mean()
        if trial >= 0.2:
            prefix, rate = nsn[:keep], trial
            break
    found: list[np.ndarray] = []
    seen: set[int] = set(int(v) for v in exclude)
    total = 0
    while total < n:
        batch = _candidates(rng, prefix, len(nsn), int((n - total) / rate * 1.2) + 16)
        batch = batch[_valid(cc, batch)]
        _, first = np.unique(batch, return_index=True)
        fresh = [v for v in batch[np.sort(first)] if v not in seen][: n - total]
        seen.update(fresh)
        found.append(np.array(fresh, dtype=np.int64))
        total += len(fresh)
    return _spell(cc, np.concatenate(found)[:n])


def _spell(cc: int, nsns: np.ndarray) -> Numbers:
    spaced = [phonenumbers.format_number(phonenumbers.PhoneNumber(country_code=cc, national_number=int(v)),
                                         PhoneNumberFormat.NATIONAL) for v in nsns]
    national = [re.sub(r"\D", "", s) for s in spaced]
    e164 = [f"+{cc}{v}" for v in nsns]
    return Numbers(np.array(e164, dtype=object), np.array(national, dtype=object), np.array(spaced, dtype=object))


def national_numbers(e164: Iterable[str]) -> set[int]:
    """The national significant numbers of E.164 strings (what ``mobile_numbers`` excludes)."""
    return {int(phonenumbers.parse(str(v)).national_number or 0) for v in e164}


def invalid_numbers(rng: np.random.Generator, iso3: str, n: int) -> np.ndarray:
    """Strings that look like numbers but fail phonenumbers validation (too short, bad prefix, letters)."""
    region = iso2_of(iso3)
    cc = phonenumbers.country_code_for_region(region)
    out: list[str] = []
    while len(out) < n:
        kind = rng.integers(0, 3)
        digits = "".join(str(d) for d in rng.integers(0, 10, size=int(rng.integers(3, 7))))
        text = [f"+{cc}{digits}", f"0{digits}", f"+{cc}9{digits}X{digits[:2]}"][kind]
        try:
            ok = phonenumbers.is_valid_number(phonenumbers.parse(text, region))
        except phonenumbers.NumberParseException:
            ok = False
        if not ok:
            out.append(text)
    return np.array(out, dtype=object)


def imeis(rng: np.random.Generator, n: int) -> np.ndarray:
    """15-digit IMEIs: reporting body 35, random TAC and serial, Luhn check digit."""
    payload = 35 * 10**12 + rng.integers(0, 10**12, size=n, dtype=np.int64)
    digits = (payload[:, None] // 10 ** np.arange(13, -1, -1, dtype=np.int64)) % 10
    doubled = digits[:, 1::2] * 2  # every second digit from the right of the 14-digit payload
    total = digits[:, 0::2].sum(axis=1) + (doubled - 9 * (doubled > 9)).sum(axis=1)
    check = (10 - total % 10) % 10
    return np.array([f"{v:015d}" for v in payload * 10 + check], dtype=object)
