"""At-rest encryption of hub-tier case values: round trip, binding, tampering, shredding."""

from __future__ import annotations

import pytest

from hub.vault import MAX_VALUE_BYTES, FieldVault, VaultError

KEY = b"k" * 32


@pytest.fixture
def vault() -> FieldVault:
    return FieldVault(KEY)


def test_a_value_opens_for_its_case_and_field(vault: FieldVault) -> None:
    wrapped = vault.new_case_key("C-AAAA-BBBB")
    blob = vault.seal(wrapped, "C-AAAA-BBBB", "justice.date_sortie", "2027-03-14")
    assert b"2027" not in blob and b"2027" not in wrapped  # nothing in clear
    assert vault.open(wrapped, "C-AAAA-BBBB", "justice.date_sortie", blob) == "2027-03-14"


def test_each_seal_is_fresh(vault: FieldVault) -> None:
    wrapped = vault.new_case_key("C-1")
    assert vault.seal(wrapped, "C-1", "f.a", "x") != vault.seal(wrapped, "C-1", "f.a", "x")
    assert vault.new_case_key("C-1") != vault.new_case_key("C-1")


@pytest.mark.parametrize(
    ("case_ref", "field_id"),
    [("C-2", "justice.date_sortie"), ("C-1", "sortie.date")],
)
def test_a_value_moved_to_another_case_or_field_does_not_open(
    vault: FieldVault, case_ref: str, field_id: str
) -> None:
    wrapped = vault.new_case_key("C-1")
    blob = vault.seal(wrapped, "C-1", "justice.date_sortie", "2027-03-14")
    with pytest.raises(VaultError):
        vault.open(wrapped, case_ref, field_id, blob)


def test_a_case_key_moved_to_another_case_does_not_open(vault: FieldVault) -> None:
    wrapped = vault.new_case_key("C-1")
    with pytest.raises(VaultError):
        vault.seal(wrapped, "C-2", "f.a", "x")


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_any_flipped_byte_is_refused(vault: FieldVault, position: int) -> None:
    wrapped = vault.new_case_key("C-1")
    blob = bytearray(vault.seal(wrapped, "C-1", "f.a", "valeur"))
    blob[position] ^= 0x01
    with pytest.raises(VaultError):
        vault.open(wrapped, "C-1", "f.a", bytes(blob))
    bad_key = bytearray(wrapped)
    bad_key[position] ^= 0x01
    with pytest.raises(VaultError):
        vault.open(bytes(bad_key), "C-1", "f.a", vault.seal(wrapped, "C-1", "f.a", "v"))


def test_another_data_key_opens_nothing(vault: FieldVault) -> None:
    wrapped = vault.new_case_key("C-1")
    blob = vault.seal(wrapped, "C-1", "f.a", "x")
    with pytest.raises(VaultError):
        FieldVault(b"z" * 32).open(wrapped, "C-1", "f.a", blob)


def test_truncated_input_and_oversized_values_are_refused(vault: FieldVault) -> None:
    wrapped = vault.new_case_key("C-1")
    with pytest.raises(VaultError):
        vault.open(wrapped, "C-1", "f.a", b"\x01short")
    with pytest.raises(VaultError):
        vault.seal(wrapped, "C-1", "f.a", "x" * (MAX_VALUE_BYTES + 1))
    with pytest.raises(VaultError):
        FieldVault(b"short")


def test_a_tag_is_stable_for_a_value_and_needs_the_case_key(vault: FieldVault) -> None:
    wrapped = vault.new_case_key("C-1")
    tag = vault.tag(wrapped, "C-1", "justice.date_sortie", "2027-03-14")
    assert tag == vault.tag(wrapped, "C-1", "justice.date_sortie", "2027-03-14")
    assert tag != vault.tag(wrapped, "C-1", "justice.date_sortie", "2027-03-15")
    assert tag != vault.tag(wrapped, "C-1", "justice.date_fin_mesure", "2027-03-14")
    # Another case's key (same reference, same value): another tag, nothing to compare
    assert tag != vault.tag(vault.new_case_key("C-1"), "C-1", "justice.date_sortie", "2027-03-14")
    assert "2027" not in tag
    with pytest.raises(VaultError):
        vault.tag(wrapped, "C-2", "justice.date_sortie", "2027-03-14")
