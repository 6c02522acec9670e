"""Incremental detokenization and stop-string matching, on hand-worked token streams.

The tiny tokenizer is byte-level BPE trained on ASCII docstrings, so every non-ASCII
character is several single-byte tokens: the case where decoding a token at a time
shows half-characters (U+FFFD) that must never reach the text or a stop string.
"""

from __future__ import annotations

import pytest

from octavo.detokenizer import IncrementalDetokenizer, StopStringChecker, decode, find_stop_string

TEXT = "héllo wörld €5 😀 中文, done"


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


@pytest.fixture(scope="module")
def text_ids(tokenizer) -> list[int]:
    return tokenizer.encode(TEXT, add_special_tokens=False)


def _byte_ends(tokenizer, ids: list[int]) -> list[int]:
    """Bytes of TEXT covered after each token: a byte-level token's string has one char per byte."""
    ends, total = [], 0
    for piece in tokenizer.convert_ids_to_tokens(ids):
        total += len(piece)
        ends.append(total)
    return ends


def _complete_prefix(n_bytes: int) -> str:
    """The characters of TEXT whose bytes all lie in its first n_bytes."""
    return TEXT.encode()[:n_bytes].decode("utf-8", errors="ignore")


def test_tiny_tokenizer_splits_non_ascii_characters_across_tokens(tokenizer, text_ids):
    pieces = [tokenizer.decode([t]) for t in text_ids]
    assert "\ufffd" in pieces  # some tokens are lone bytes of a longer character
    assert len(text_ids) > len(TEXT.encode()) // 3
    assert _byte_ends(tokenizer, text_ids)[-1] == len(TEXT.encode())


def test_incremental_text_holds_back_incomplete_characters(tokenizer, text_ids):
    detok = IncrementalDetokenizer(tokenizer)
    previous = ""
    for token, end in zip(text_ids, _byte_ends(tokenizer, text_ids)):
        added = detok.add([token])
        expected = _complete_prefix(end)
        assert detok.text == expected
        assert added == len(expected) - len(previous)
        previous = expected
    assert detok.text == TEXT
    assert detok.pending_text() == ""


def test_pending_text_shows_a_trailing_half_character_as_replacement(tokenizer):
    euro = tokenizer.encode("€", add_special_tokens=False)
    assert len(euro) == 3
    detok = IncrementalDetokenizer(tokenizer)
    detok.add(euro[:2])
    assert detok.text == ""
    assert detok.pending_text() == tokenizer.decode(euro[:2]) and "\ufffd" in detok.pending_text()


@pytest.mark.parametrize("stop", ["€", "😀 中", "文,", "ö"])
@pytest.mark.parametrize("include", [False, True])
def test_stop_string_of_multibyte_characters_stops_at_the_completing_token(tokenizer, text_ids, stop, include):
    ends = _byte_ends(tokenizer, text_ids)
    stop_end_byte = len(TEXT[:TEXT.index(stop) + len(stop)].encode())
    expected_tokens = next(i for i, end in enumerate(ends) if end >= stop_end_byte) + 1
    checker = StopStringChecker(tokenizer, [stop], include, 0, True, True)
    for n, token in enumerate(text_ids, start=1):
        if checker.update([token]) is not None:
            break
    assert checker.stop_string == stop
    assert n == expected_tokens
    cut = TEXT.index(stop) + (len(stop) if include else 0)
    assert checker.text == TEXT[:cut]


def test_stop_strings_are_tried_in_the_order_given(tokenizer):
    # vLLM: the first stop string in the list that the new text completes wins, even if
    # another one starts earlier.
    assert find_stop_string("xab", 3, ["b", "a"], False) == ("b", 2)
    assert find_stop_string("xab", 3, ["a", "b"], False) == ("a", 1)
    assert find_stop_string("xab", 3, ["a"], True) == ("a", 2)
    assert find_stop_string("xab", 3, ["b"], True) == ("b", -1)  # ends the text: no cut


def test_only_matches_ending_in_the_new_text_count():
    # "ab" was fully in the old text ("xab" + "c"): not found again; "bc" spans the boundary.
    assert find_stop_string("xabc", 1, ["ab"], False) is None
    assert find_stop_string("xabc", 1, ["bc"], False) == ("bc", 2)
    assert find_stop_string("xabc", 0, ["bc"], False) is None


def test_min_tokens_keeps_early_text_out_of_stop_matches(tokenizer):
    ids = tokenizer.encode("stop here stop there", add_special_tokens=False)
    first_stop_tokens = len(tokenizer.encode("stop", add_special_tokens=False))
    checker = StopStringChecker(tokenizer, ["stop"], False, first_stop_tokens, True, True)
    for n, token in enumerate(ids, start=1):
        if checker.update([token]) is not None:
            break
    assert checker.text == "stop here "
    assert n == len(tokenizer.encode("stop here stop", add_special_tokens=False))


def test_token_that_stopped_the_request_is_left_out_of_the_text(tokenizer):
    ids = tokenizer.encode("abc def", add_special_tokens=False)
    checker = StopStringChecker(tokenizer, ["zzz"], False, 0, True, True)
    checker.update(ids[:-1])
    assert checker.update(ids[-1:], stopped_by_token=True) is None
    assert checker.text == tokenizer.decode(ids[:-1])
    assert checker.num_tokens == len(ids)
    kept = StopStringChecker(tokenizer, ["zzz"], True, 0, True, True)
    kept.update(ids, stopped_by_token=True)
    assert kept.text == "abc def"


def test_stop_string_in_the_last_token_is_found_when_it_stopped_by_token_and_is_kept(tokenizer):
    ids = tokenizer.encode("abc def", add_special_tokens=False)
    checker = StopStringChecker(tokenizer, [tokenizer.decode(ids[-1:])], True, 0, True, True)
    assert checker.update(ids, stopped_by_token=True) == tokenizer.decode(ids[-1:])


@pytest.fixture(scope="module")
def wordpiece_tokenizer():
    """A WordPiece tokenizer: its decoder puts a space before every word, specials included."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[SEP]": 1, "hello": 2, "world": 3, "##s": 4}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]")


def test_spaces_between_special_tokens_false_joins_adjacent_specials(wordpiece_tokenizer):
    ids = [2, 1, 1, 3, 4, 1]  # hello [SEP] [SEP] world ##s [SEP]
    assert decode(wordpiece_tokenizer, ids, False, True) == "hello [SEP] [SEP] worlds [SEP]"
    # vLLM (fast tokenizers): an added token right after another loses its leading space.
    assert decode(wordpiece_tokenizer, ids, False, False) == "hello [SEP][SEP] worlds [SEP]"
    assert decode(wordpiece_tokenizer, ids, True, False) == "hello worlds"


def test_incremental_decode_with_special_tokens_matches_full_decode(tokenizer):
    ids = tokenizer.encode("one two", add_special_tokens=False)
    stream = [1] + ids[:1] + [2, 2] + ids[1:] + [2]
    for skip in (True, False):
        detok = IncrementalDetokenizer(tokenizer, skip, True)
        detok.add(stream)
        assert detok.text == tokenizer.decode(stream, skip_special_tokens=skip)
    assert decode(tokenizer, stream, False, False) == tokenizer.decode(stream, skip_special_tokens=False)
