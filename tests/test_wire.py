"""Frames the live hub writes itself must be what any WebSocket client parses."""

from collections.abc import Generator

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from api.wire import text_frame_header


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536, 70000])
def test_text_frames_parse_as_one_whole_text_message(length: int) -> None:
    payload = b"x" * length
    reader = StreamReader()
    reader.feed_data(text_frame_header(length) + payload)
    parser: Generator[None, None, Frame] = Frame.parse(reader.read_exact, mask=False, max_size=None)
    with pytest.raises(StopIteration) as parsed:
        next(parser)
    frame: Frame = parsed.value.value
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, payload)
