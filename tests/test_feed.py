"""A live feed's memory: it keeps what its slowest reader has yet to pass, `keep` at most."""

from dataclasses import dataclass

from api.hub import Feed
from models.tables import SyncEvent


@dataclass(eq=False)
class Place:
    covered: int = 0


def _offer(feed: Feed, *seqs: int) -> None:
    for seq in seqs:
        event = SyncEvent(company_id="co", company_seq=seq, batch_id="sb", to_status="PENDING")
        assert feed.offer(event)


def _held_after(feed: Feed, seq: int) -> list[int] | None:
    events = feed.since(seq)
    return None if events is None else [event.row.company_seq for event in events]


def test_a_feed_lets_go_of_what_every_reader_has_passed() -> None:
    feed = Feed("co", keep=8)
    fast, slow = Place(), Place()
    feed.join(fast)
    feed.join(slow)
    _offer(feed, 1, 2, 3, 4, 5)
    assert _held_after(feed, 0) == [1, 2, 3, 4, 5]  # nobody has read yet

    fast.covered, slow.covered = 5, 3
    _offer(feed, 6)
    assert _held_after(feed, 3) == [4, 5, 6]
    assert _held_after(feed, 2) is None  # read from the log, had anyone asked

    fast.covered = slow.covered = 6
    _offer(feed, 7)
    assert _held_after(feed, 6) == [7]  # readers that keep up: only what is on its way
    assert _held_after(feed, 5) is None


def test_a_reader_far_behind_pins_no_more_than_keep_and_one_that_leaves_none() -> None:
    feed = Feed("co", keep=8)
    stuck = Place()
    feed.join(stuck)
    _offer(feed, *range(1, 21))
    assert _held_after(feed, 12) == list(range(13, 21))  # it will read the log instead
    assert _held_after(feed, 11) is None

    feed.leave(stuck)
    _offer(feed, 21)
    assert _held_after(feed, 20) is None  # nobody reads it: nothing is kept
    assert _held_after(feed, 21) == []

    late = Place(feed.seq)  # as a follower joins: at the feed's number
    feed.join(late)
    _offer(feed, 22)
    assert _held_after(feed, 21) == [22]
