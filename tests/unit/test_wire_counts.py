"""benchmarks.wire_counts reads HTTP/2 frames as a relay sees them: split across reads, after the
client's preface, acks and trailers told apart, and what each read carried summarised."""

from __future__ import annotations

from benchmarks.wire_counts import CLIENT_PREFACE, FrameReader, Tally, write_shape


def frame(kind: int, flags: int = 0, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + (1).to_bytes(4, "big") + payload


RESPONSE = frame(1, 4, b"h" * 5) + frame(0, 0, b"d" * 12) + frame(1, 5, b"t" * 3)


def test_a_response_split_across_reads_is_counted_once_per_frame() -> None:
    tally = Tally()
    reader = FrameReader("s>c", tally, client_side=False)
    assert reader.feed(RESPONSE[:20]) == ["HEADERS"]
    assert reader.feed(RESPONSE[20:]) == ["DATA", "HEADERS (trailers)"]
    figures = tally.per(1)
    assert figures["s>c reads"] == (2, len(RESPONSE))
    assert figures["s>c DATA"] == (1, 9 + 12)
    assert figures["s>c HEADERS (trailers)"] == (1, 9 + 3)


def test_the_client_preface_is_skipped_and_acks_are_named() -> None:
    tally = Tally()
    reader = FrameReader("c>s", tally, client_side=True)
    wire = frame(4) + frame(4, 1) + frame(6, 1, b"p" * 8) + frame(8, 0, b"w" * 4)
    names = reader.feed(CLIENT_PREFACE + wire)
    assert names == ["SETTINGS", "SETTINGS ack", "PING ack", "WINDOW_UPDATE"]


def test_write_shape_names_whole_responses_and_counts_the_rest() -> None:
    assert write_shape(["HEADERS", "DATA", "HEADERS (trailers)"]) == "response"
    assert write_shape(["DATA", "DATA", "WINDOW_UPDATE"]) == "2 DATA + WINDOW_UPDATE"
    assert write_shape([]) == "partial frame"
