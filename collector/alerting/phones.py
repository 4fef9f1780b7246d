"""Phone numbers in one form, E.164 (`+8613800000001`), wherever two are compared.

Numbers arrive in every form people and modems use: `13800000002` (national, as many
modems report the sender), `+86 138-0000-0002`, `008613800000002`, `8613800000002`,
`010-12345678` (a landline with its trunk prefix 0). ITU-T E.164 §6: at most 15 digits
after the `+`, country code first. China: country code 86; mobile numbers are 11 digits
starting with 1; landlines are dialled nationally with the trunk prefix 0.
"""

from __future__ import annotations

import re

DEFAULT_COUNTRY_CODE = "86"
_SEPARATORS = re.compile(r"[\s\-().\u00a0\u3000]")  # spaces (also full-width), dashes, ()
MAX_DIGITS = 15  # E.164 §6.1


def e164(number: str, country_code: str = DEFAULT_COUNTRY_CODE) -> str:
    """`number` in E.164; national numbers are taken as `country_code`'s. ValueError if it
    is not a phone number."""
    if number[:1] == "+" and number.isascii() and number[1:].isdigit() \
            and 3 <= len(number) - 1 <= MAX_DIGITS and number[1] != "0":
        return number  # E.164 already, as registries keep them: 100,000 at start-up
    return _normalised(number, country_code)


def _normalised(number: str, country_code: str) -> str:
    raw = _SEPARATORS.sub("", number.translate(_FULL_WIDTH))
    if raw.startswith("+"):
        digits = raw[1:]
    elif raw.startswith("00"):  # international prefix
        digits = raw[2:]
    elif raw.startswith(country_code) and len(raw) == len(country_code) + 11 \
            and raw[len(country_code)] == "1":  # 86 + a mobile number, without the +
        digits = raw
    elif raw.startswith("0"):  # trunk prefix of a national number
        digits = country_code + raw[1:]
    else:
        digits = country_code + raw
    if not digits.isascii() or not digits.isdigit() or not 3 <= len(digits) <= MAX_DIGITS \
            or digits.startswith("0"):
        raise ValueError(f"{number!r} is not a phone number (E.164: +, country code, up to "
                         f"{MAX_DIGITS} digits)")
    return "+" + digits


def same_number(a: str, b: str) -> bool:
    """Whether two numbers are the same phone (False if either is not a number)."""
    try:
        return bool(a) and bool(b) and e164(a) == e164(b)
    except ValueError:
        return False


def e164_or_none(number: str) -> str | None:
    try:
        return e164(number)
    except ValueError:
        return None


_FULL_WIDTH = str.maketrans("０１２３４５６７８９＋－", "0123456789+-")
