"""DigestSet behaves exactly like a set of non-zero 64-bit ints, through growth."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.digestset import DigestSet, digest64


@given(st.lists(st.integers(min_value=1, max_value=(1 << 64) - 1), max_size=3000))
def test_matches_a_python_set(values: list[int]) -> None:
    table = DigestSet(capacity=16)
    reference: set[int] = set()
    for value in values:
        assert table.add(value) == (value not in reference)
        reference.add(value)
        assert value in table
    assert len(table) == len(reference)
    assert all(v in table for v in reference)


def test_colliding_slots_and_absent_members() -> None:
    table = DigestSet(capacity=16)
    clashing = [1 + 16 * i for i in range(10)]  # same low bits: one probe chain
    for value in clashing:
        assert table.add(value)
    assert all(v in table for v in clashing)
    assert 2 not in table
    assert 1 + 16 * 11 not in table


def test_digest_is_never_zero_and_stable() -> None:
    assert digest64("a") == digest64("a") != digest64("b")
    assert digest64("\udcff") != 0  # non-UTF-8 names (surrogate escapes) hash too


@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(min_value=1, max_value=64)),
        max_size=400,
    )
)
def test_add_and_discard_match_a_python_set(ops: list[tuple[bool, int]]) -> None:
    # Small values share low bits, so probe chains and deletions inside them are common.
    table = DigestSet(capacity=16)
    reference: set[int] = set()
    for add, value in ops:
        if add:
            assert table.add(value) == (value not in reference)
            reference.add(value)
        else:
            assert table.discard(value) == (value in reference)
            reference.discard(value)
        assert len(table) == len(reference)
    assert all((v in table) == (v in reference) for v in range(1, 65))


@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(min_value=1, max_value=64), st.integers(0, 1 << 63)),
        max_size=400,
    )
)
def test_a_map_matches_a_dict_through_growth_and_deletion(
    ops: list[tuple[bool, int, int]],
) -> None:
    table = DigestSet(capacity=16, values=True)
    reference: dict[int, int] = {}
    for put, key, value in ops:
        if put:
            assert table.add(key, value) == (key not in reference)
            reference[key] = value
        else:
            assert table.discard(key) == (key in reference)
            reference.pop(key, None)
        assert len(table) == len(reference)
    assert all(table.get(k) == reference.get(k) for k in range(1, 65))
    assert dict(table.items()) == reference


@settings(max_examples=50)
@given(
    st.lists(st.lists(st.integers(min_value=1, max_value=200), max_size=60), max_size=8),
    st.booleans(),
)
def test_add_all_is_add_of_each(batches: list[list[int]], values: bool) -> None:
    """`add_all` (replay's bulk insert, through growth) leaves the table `add` one by one does."""
    bulk, single = DigestSet(capacity=16, values=values), DigestSet(capacity=16, values=values)
    for batch in batches:
        worth = [digest * 3 for digest in batch]
        bulk.add_all(batch, worth if values else None)
        for digest, value in zip(batch, worth, strict=True):
            single.add(digest, value)
    assert len(bulk) == len(single) and bulk == single
    if values:
        assert sorted(bulk.items()) == sorted(single.items())
