"""The check's exchange without MPI: every rank hears from every rank, and only then writes the user's buffer.

The routes (:func:`collectives.agreement.route`) are played out message by message with eager
sends: each message carries the set of ranks its sender has heard from, as the real messages carry
the combined signatures. A disagreement anywhere must reach every rank, and a rank may write its
result into the user's buffer (the leg marked ``last``) only once the message in hand covers
every rank's signature.
"""

from __future__ import annotations

import pytest

from collectives.agreement import FUSE_BYTES, describe, fusable, route
from collectives.algorithms.recursive_doubling import recursive_doubling_allreduce
from collectives.algorithms.ring import ring_allreduce


def play(p: int) -> tuple[list[set[int]], list[set[int]]]:
    """(what each rank has heard at the end, what it had heard when its last leg's message arrived)."""
    legs = [route(p, r) for r in range(p)]
    heard = [{r} for r in range(p)]
    at_last: list[set[int]] = [set() for _ in range(p)]
    queued: dict[tuple[int, int, int], list[set[int]]] = {}  # (source, dest, tag) -> messages in order
    position = [0] * p
    sent = [False] * p  # the current leg's message has gone out
    while any(position[r] < len(legs[r]) for r in range(p)):
        progressed = False
        for r in range(p):
            if position[r] == len(legs[r]):
                continue
            leg = legs[r][position[r]]
            if leg.dest is not None and not sent[r]:
                queued.setdefault((r, leg.dest, leg.tag), []).append(set(heard[r]))
                sent[r] = progressed = True
            if leg.source is not None:
                waiting = queued.get((leg.source, r, leg.tag))
                if not waiting:
                    continue
                heard[r] |= waiting.pop(0)
                if leg.last:
                    at_last[r] = set(heard[r])
            position[r] += 1
            sent[r] = False
            progressed = True
        assert progressed, f"p={p}: the routes deadlock at legs {position}"
    assert not any(queued.values()), f"p={p}: messages nobody received"
    return heard, at_last


@pytest.mark.parametrize("p", range(2, 34))
def test_every_rank_hears_every_rank(p):
    heard, at_last = play(p)
    everyone = set(range(p))
    assert all(h == everyone for h in heard)
    for r in range(p):
        if route(p, r)[-1].source is not None:  # the result is received: it goes into the buffer then
            assert at_last[r] == everyone, f"p={p} rank {r} writes its buffer having heard only {at_last[r]}"


@pytest.mark.parametrize("p", [2, 3, 4, 5, 6, 7, 8, 12, 16])
def test_the_route_is_recursive_doublings_message_count(p):
    """lg pof2 exchanges per rank in the core; the fold adds one message each way for the 2*rem ranks."""
    pof2 = 1 << (p.bit_length() - 1)
    rem = p - pof2
    for r in range(p):
        legs = route(p, r)
        if r < 2 * rem and r % 2 == 0:
            assert [(leg.dest, leg.source) for leg in legs] == [(r + 1, None), (None, r + 1)]
        else:
            core = [leg for leg in legs if leg.dest is not None and leg.source is not None]
            assert len(core) == pof2.bit_length() - 1
            assert len(legs) == len(core) + (2 if r < 2 * rem else 0)


def test_only_small_builtin_recursive_doubling_is_fused():
    assert fusable(recursive_doubling_allreduce, 0) and fusable(recursive_doubling_allreduce, FUSE_BYTES)
    assert not fusable(recursive_doubling_allreduce, FUSE_BYTES + 1)
    assert not fusable(ring_allreduce, 8)

    def my_recursive_doubling(t, buf, op):  # a user's algorithm, whatever its name
        yield from recursive_doubling_allreduce(t, buf, op)

    assert not fusable(my_recursive_doubling, 8)


def test_the_signature_tells_fused_from_unfused_and_the_choice():
    described = {describe("auto", "recursive_doubling", True), describe("auto", "recursive_doubling", False)}
    described |= {describe("auto", "ring", False), describe("ring", "ring", False), describe("ring", None, False)}
    assert len(described) == 4  # "ring" resolved and not yet resolved (an invalid call) read the same
    assert describe("ring", "ring", False) == describe("ring", None, False) == "'ring'"
