"""Who a rights request is about: a subscriber number (operator side) or a pseudonym (office side).

The pseudonym is computed in plain Python with the same E.164 normalisation and HMAC-SHA256 as
the Spark job (``PseudonymKey.pseudonym``), so one request never needs a Spark job to find its
subject. The raw number lives only in this object's memory: never in a log, report or file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import phonenumbers

from mobility.config import Agreement
from mobility.errors import KeyMaterialError, MobilityError

PSEUDONYM_PATTERN = re.compile(r"^[0-9a-f]{64}$")


class RightsRequestError(MobilityError):
    """A data-subject request cannot be carried out as given; nothing was changed."""


@dataclass(frozen=True)
class Subject:
    pseudonym: str
    key_id: str
    e164: str | None = field(default=None, repr=False)  # only on the operator side; never written anywhere

    @property
    def has_number(self) -> bool:
        return self.e164 is not None

    @property
    def masked(self) -> str:
        """How reports name the person: never the full number."""
        if self.e164:
            return f"{self.e164[:3]}{'•' * (len(self.e164) - 6)}{self.e164[-3:]}"
        return f"pseudonym {self.pseudonym[:8]}…"

    def number_forms(self) -> set[str]:
        """Digit strings the raw number may be written as in an operator file (E.164, national, 00-prefixed)."""
        if not self.e164:
            return set()
        parsed = phonenumbers.parse(self.e164, None)
        national = str(parsed.national_number)
        digits = self.e164.lstrip("+")
        return {digits, "00" + digits, national, "0" + national}


def from_msisdn(agreement: Agreement, msisdn: str) -> Subject:
    """The subject of a number, under the agreement's key; refuses before anything is read or written."""
    # the operator's key handling, imported only here: requests by pseudonym run at the office without it
    from mobility.anonymize.pseudonymize import load_key, to_e164

    e164 = to_e164(str(msisdn), agreement.home_region) if msisdn is not None else None
    if e164 is None:
        raise RightsRequestError(
            f"--msisdn is not a valid phone number for region {agreement.home_region} "
            f"(agreement {agreement.agreement_id}'s home country {agreement.home_country})",
            where="--msisdn",
            hint="give the number in international form, e.g. +63 917 123 4567, or as written on the "
                 "subscriber's contract; nothing was changed")
    try:
        key = load_key(agreement.key)
    except KeyMaterialError as exc:
        raise KeyMaterialError(
            f"{exc}\nA request by number must run on the operator side, where the agreement's key is "
            "available; nothing was changed",
            hint="run it where the key is, or on the office side give --pseudonym instead of --msisdn") from None
    return Subject(key.pseudonym(e164), key.key_id, e164)


def from_pseudonym(agreement: Agreement, pseudonym: str | None) -> Subject:
    text = str(pseudonym or "").strip().lower()
    if not PSEUDONYM_PATTERN.match(text):
        raise RightsRequestError(
            "--pseudonym must be 64 hexadecimal characters (an HMAC-SHA256 pseudonym as stored in the office zone)",
            where="--pseudonym", hint="copy the pseudonym exactly as the operator gave it; nothing was changed")
    return Subject(text, agreement.key.key_id)


def resolve(agreement: Agreement, *, msisdn: str | None = None, pseudonym: str | None = None) -> Subject:
    if (msisdn is None) == (pseudonym is None):
        raise RightsRequestError("give exactly one of --msisdn (operator side) or --pseudonym (office side)",
                                 where="subject", hint="nothing was changed")
    return from_msisdn(agreement, msisdn) if msisdn is not None else from_pseudonym(agreement, pseudonym)
