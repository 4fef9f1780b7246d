"""One phone number, whatever form it arrives in: E.164 with +86 by default."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.alerting.contacts import DeviceContact, Officer, StaticContacts
from collector.alerting.phones import e164, same_number


@pytest.mark.parametrize("form", [
    "13800000002", "+8613800000002", "8613800000002", "008613800000002",
    "+86 138 0000 0002", "138-0000-0002", "(+86) 138.0000.0002", "１３８０００００００２",
])
def test_every_form_of_a_mobile_number_is_one_number(form: str) -> None:
    assert e164(form) == "+8613800000002"


@pytest.mark.parametrize("bad", ["", "+", "abc", "+0086138", "1" * 16, "١٣٨٠٠٠٠٠٠٠٢"])
def test_what_is_not_a_number_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a phone number"):
        e164(bad)


_mobile = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)
_sep = st.sampled_from(["", " ", "-", "  "])


@given(number=_mobile, prefix=st.sampled_from(["", "+86", "86", "0086", "+86 "]), sep=_sep)
def test_written_any_way_a_number_normalises_to_the_same_e164(number: str, prefix: str,
                                                             sep: str) -> None:
    written = prefix + sep.join([number[:3], number[3:7], number[7:]])
    assert e164(written) == "+86" + number
    assert e164(e164(written)) == e164(written)  # idempotent
    assert same_number(written, number)


def test_contacts_find_a_sender_in_national_form() -> None:
    contacts = StaticContacts(
        {"dev-a": DeviceContact("dev-a", "x", "城关镇", "g1", "张三", "+8613800000001")},
        {("township_officer", "城关镇"): Officer("王镇长", "+8613900000009")})
    assert contacts.by_phone("13800000001") == "张三"
    assert contacts.by_phone("8613900000009") == "王镇长"
    assert contacts.by_phone("13800000002") is None
    assert contacts.by_phone("not a number") is None


@given(st.one_of(st.from_regex(r"\+[0-9]{0,17}", fullmatch=True),
                 st.text().map(lambda t: "+" + t)))
def test_the_e164_fast_path_gives_what_normalising_gives(number: str) -> None:
    """Numbers already in E.164 skip normalising (100,000 at a registry load); for any
    text after a `+`, the result or the refusal is the same as normalising it."""
    from collector.alerting.phones import DEFAULT_COUNTRY_CODE, _normalised

    try:
        expected: str | None = _normalised(number, DEFAULT_COUNTRY_CODE)
    except ValueError:
        expected = None
    try:
        got: str | None = e164(number)
    except ValueError:
        got = None
    assert got == expected
