"""Frames the live hub writes itself must be what any WebSocket client parses; the lighter
parts our WebSocket protocol gives uvicorn behave as the asyncio ones they replace."""

import asyncio
from collections.abc import Generator

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from api.wire import Flag, Inbox, text_frame_header


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


async def test_the_inbox_hands_messages_over_in_order_waiting_for_the_next() -> None:
    inbox = Inbox()
    inbox.put_nowait({"type": "websocket.connect"})
    assert not inbox.empty()
    assert await inbox.get() == {"type": "websocket.connect"}
    assert inbox.empty()
    waiting = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    inbox.put_nowait({"type": "websocket.receive", "text": "1"})
    inbox.put_nowait({"type": "websocket.receive", "text": "2"})
    assert (await waiting)["text"] == "1"
    assert (await inbox.get())["text"] == "2"
    cancelled = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    cancelled.cancel()
    inbox.put_nowait({"type": "websocket.disconnect"})  # a reader that left takes nothing
    assert await inbox.get() == {"type": "websocket.disconnect"}


async def test_the_flag_holds_writers_while_cleared() -> None:
    flag = Flag()
    flag.set()
    await asyncio.wait_for(flag.wait(), 1)  # set: no wait
    flag.clear()
    writers = [asyncio.ensure_future(flag.wait()) for _ in range(2)]
    await asyncio.sleep(0)
    assert not flag.is_set() and not any(w.done() for w in writers)
    writers[0].cancel()
    flag.set()
    await asyncio.wait_for(writers[1], 1)
    assert flag.is_set() and writers[0].cancelled()
