"""Who a rights request is about: a subscriber number or an operator id (operator side), or a pseudonym
(office side).

The pseudonym is computed in plain Python with the same normalisation and HMAC-SHA256 as the Spark
job (``PseudonymKey.pseudonym``), so one request never needs a Spark job to find its subject. What is
keyed depends on the agreement's ``input_format`` (``mobility.anonymize.formats.id_kind``): the number
in E.164 for a format that delivers phone numbers (``--msisdn``), the operator's own pseudonymous id
as the format's reader writes it for one that does not (``--operator-id``; multimno's ``user_id`` as
lowercase hex). The raw number or id lives only in this object's memory: never in a log, report or file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import phonenumbers

from mobility.config import Agreement
from mobility.errors import KeyMaterialError, MobilityError

PSEUDONYM_PATTERN = re.compile(r"^[0-9a-f]{64}$")
# multimno's user_id is binary; its reader keys the bytes as lowercase hex text (formats/multimno.py, _text)
HEX_ID_PATTERN = r"^(?:[0-9a-f]{2})+$"
NOT_CHANGED = "nothing was changed"
# how the operator finds a person's id, per format whose subscriber ids are the operator's own pseudonyms
FINDING_THE_ID = {
    "multimno": "the operator finds a person's user_id with its own pseudonymization, the step that writes "
                "user_id into multimno's bronze events (mno_events): apply it to the subscriber's number (or "
                "IMSI), or look the person up in its pseudonymization table, and give the bytes as hex, as Spark "
                "SQL's hex(user_id) shows them (64 hex digits for multimno's SHA-256 ids; upper or lower case)",
}
GENERIC_FINDING = ("the operator finds a person's id with the pseudonymization that wrote the ids of its "
                   "deliveries, and gives it exactly as the delivery carries it")


class RightsRequestError(MobilityError):
    """A data-subject request cannot be carried out as given; nothing was changed."""


@dataclass(frozen=True)
class Subject:
    pseudonym: str
    key_id: str
    e164: str | None = field(default=None, repr=False)  # only on the operator side; never written anywhere
    operator_id: str | None = field(default=None, repr=False)  # idem, for an agreement of operator ids

    @property
    def has_number(self) -> bool:
        return self.e164 is not None

    @property
    def has_identifier(self) -> bool:
        """The person's identifier as the operator delivers it (number or operator id) is known: a request
        made on the operator side, which can also search the raw quarantined rows."""
        return self.e164 is not None or self.operator_id is not None

    @property
    def masked(self) -> str:
        """How reports name the person: never the full number or id."""
        if self.e164:
            return f"{self.e164[:3]}{'•' * (len(self.e164) - 6)}{self.e164[-3:]}"
        if self.operator_id:
            shown = self.operator_id
            return f"operator id {shown[:4]}…{shown[-4:]}" if len(shown) >= 16 else "operator id …"
        return f"pseudonym {self.pseudonym[:8]}…"

    def number_forms(self) -> set[str]:
        """Digit strings the raw number may be written as in an operator file (E.164, national, 00-prefixed)."""
        if not self.e164:
            return set()
        parsed = phonenumbers.parse(self.e164, None)
        national = str(parsed.national_number)
        digits = self.e164.lstrip("+")
        return {digits, "00" + digits, national, "0" + national}


def takes_operator_ids(agreement: Agreement) -> bool:
    """True when the agreement's deliveries name subscribers by the operator's own pseudonymous id
    (``mobility.anonymize.formats.id_kind``), not by phone number."""
    from mobility.anonymize.formats import PSEUDONYMS, id_kind

    return id_kind(agreement.input_format) == PSEUDONYMS


def raw_id(agreement: Agreement) -> str:
    """What the agreement's raw deliveries name a person by, in words: "number" or "operator id"."""
    return "operator id" if takes_operator_ids(agreement) else "number"


def finding_the_id(input_format: str) -> str:
    return FINDING_THE_ID.get(input_format, GENERIC_FINDING)


def operator_id_text(input_format: str, value: object) -> str | None:
    """The id as the format's reader gives it to the keyed hash (what ``mobility anonymize`` keys), or None
    when ``value`` cannot be such an id. multimno: the bytes of user_id as lowercase hex."""
    text = str(value if value is not None else "").strip()
    if input_format == "multimno":
        text = text.lower()
        return text if re.match(HEX_ID_PATTERN, text) else None
    return text or None  # another format of operator ids: the text as delivered, keyed as it is


def _key(agreement: Agreement, option: str):
    # the operator's key handling, imported only here: requests by pseudonym run at the office without it
    from mobility.anonymize.pseudonymize import load_key

    try:
        return load_key(agreement.key)
    except KeyMaterialError as exc:
        what = "number" if option == "--msisdn" else "operator id"
        raise KeyMaterialError(
            f"{exc}\nA request by {what} must run on the operator side, where the agreement's key is "
            f"available; {NOT_CHANGED}",
            hint=f"run it where the key is, or on the office side give --pseudonym instead of {option}") from None


def from_msisdn(agreement: Agreement, msisdn: str) -> Subject:
    """The subject of a number, under the agreement's key; refuses before anything is read or written."""
    from mobility.anonymize.pseudonymize import to_e164

    if takes_operator_ids(agreement):
        raise RightsRequestError(
            f"agreement {agreement.agreement_id}'s deliveries (input_format {agreement.input_format}) name "
            "subscribers by the operator's own pseudonymous id, never by phone number: a number finds nothing "
            "stored under it",
            where="--msisdn",
            hint=f"give --operator-id ID instead; {finding_the_id(agreement.input_format)}. On the office side "
                 f"give --pseudonym; {NOT_CHANGED}")
    e164 = to_e164(str(msisdn), agreement.home_region) if msisdn is not None else None
    if e164 is None:
        raise RightsRequestError(
            f"--msisdn is not a valid phone number for region {agreement.home_region} "
            f"(agreement {agreement.agreement_id}'s home country {agreement.home_country})",
            where="--msisdn",
            hint="give the number in international form, e.g. +63 917 123 4567, or as written on the "
                 f"subscriber's contract; {NOT_CHANGED}")
    key = _key(agreement, "--msisdn")
    return Subject(key.pseudonym(e164), key.key_id, e164=e164)


def from_operator_id(agreement: Agreement, operator_id: str) -> Subject:
    """The subject of an operator id (an agreement whose format delivers the operator's own pseudonymous ids),
    keyed as ``mobility anonymize`` keys it; refuses before anything is read or written."""
    if not takes_operator_ids(agreement):
        raise RightsRequestError(
            f"agreement {agreement.agreement_id}'s deliveries (input_format {agreement.input_format}) name "
            "subscribers by phone number: --operator-id is for an agreement whose operator delivers its own "
            "pseudonymous ids (input_format multimno)",
            where="--operator-id",
            hint=f"give the subscriber's number with --msisdn (operator side) or --pseudonym (office side); "
                 f"{NOT_CHANGED}")
    text = operator_id_text(agreement.input_format, operator_id)
    if text is None:
        expected = ("the hexadecimal text of the person's user_id (an even number of hex digits)"
                    if agreement.input_format == "multimno" else "the person's id, not blank")
        raise RightsRequestError(f"--operator-id must be {expected}", where="--operator-id",
                                 hint=f"{finding_the_id(agreement.input_format)}; {NOT_CHANGED}")
    key = _key(agreement, "--operator-id")
    return Subject(key.pseudonym(text), key.key_id, operator_id=text)


def from_pseudonym(agreement: Agreement, pseudonym: str | None) -> Subject:
    text = str(pseudonym or "").strip().lower()
    if not PSEUDONYM_PATTERN.match(text):
        raise RightsRequestError(
            "--pseudonym must be 64 hexadecimal characters (an HMAC-SHA256 pseudonym as stored in the office zone)",
            where="--pseudonym", hint=f"copy the pseudonym exactly as the operator gave it; {NOT_CHANGED}")
    return Subject(text, agreement.key.key_id)


def resolve(agreement: Agreement, *, msisdn: str | None = None, pseudonym: str | None = None,
            operator_id: str | None = None) -> Subject:
    """The subject named by exactly one of a number, an operator id or a pseudonym."""
    given = [x for x in (msisdn, operator_id, pseudonym) if x is not None]
    if len(given) != 1:
        raise RightsRequestError("give exactly one of --msisdn or --operator-id (operator side) or --pseudonym "
                                 "(office side)", where="subject", hint=NOT_CHANGED)
    if msisdn is not None:
        return from_msisdn(agreement, msisdn)
    if operator_id is not None:
        return from_operator_id(agreement, operator_id)
    return from_pseudonym(agreement, pseudonym)
