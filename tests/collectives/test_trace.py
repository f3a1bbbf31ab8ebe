"""Chrome traces: the writer's format, lane assignment, and ``collectives.sim run --trace`` against the simulation."""

import json
from collections import Counter, defaultdict

import pytest

from collectives.sim import simulate
from collectives.sim.__main__ import main
from collectives.sim.trace import sim_trace
from collectives.trace import Trace, lanes

REQUIRED = {
    "X": {"name", "ph", "ts", "dur", "pid", "tid"},
    "M": {"name", "ph", "pid", "args"},
    "C": {"name", "ph", "ts", "pid", "args"},
}


def check_chrome_trace(doc: dict) -> list[dict]:
    """What Perfetto's JSON importer needs, checked independently of the writer; returns the slices."""
    assert isinstance(doc["traceEvents"], list)
    slices = []
    for e in doc["traceEvents"]:
        assert REQUIRED[e["ph"]] <= set(e), e
        if e["ph"] == "X":
            assert isinstance(e["ts"], (int, float)) and isinstance(e["dur"], (int, float))
            assert e["dur"] >= 0, e
            slices.append(e)
        elif e["ph"] == "C":
            assert all(isinstance(v, (int, float)) for v in e["args"].values()), e
        else:
            assert e["name"] in ("process_name", "thread_name", "process_sort_index", "thread_sort_index"), e
    # slices on one track must nest: sorted by start (longest first on ties), each one starts after the
    # previous sibling ended or ends inside the slice it starts in
    by_track = defaultdict(list)
    for e in slices:
        by_track[e["pid"], e["tid"]].append(e)
    for track, items in by_track.items():
        stack: list[float] = []
        for e in sorted(items, key=lambda e: (e["ts"], -e["dur"])):
            end = e["ts"] + e["dur"]
            while stack and stack[-1] <= e["ts"] + 1e-6:
                stack.pop()
            assert not stack or end <= stack[-1] + 1e-6, f"slices overlap without nesting on track {track}: {e}"
            stack.append(end)
    return slices


def test_the_nesting_check_catches_overlapping_slices_on_one_track():
    trace = Trace()
    trace.slice(0, 0, "a", 0.0, 2.0)
    trace.slice(0, 0, "b", 1.0, 3.0)
    with pytest.raises(AssertionError, match="overlap without nesting"):
        check_chrome_trace(trace.as_json())
    trace.slice(0, 1, "c", 1.0, 3.0)  # on another track it is fine; nested is fine
    trace.slice(0, 1, "d", 1.5, 2.5)
    check_chrome_trace({"traceEvents": [e for e in trace.events if e["tid"] == 1]})


def test_writer_emits_named_tracks_and_complete_events_in_microseconds(tmp_path):
    trace = Trace(note="hello")
    trace.process(3, "rank 3", order=3)
    trace.thread(3, 1, "comm thread")
    trace.slice(3, 1, "bucket 0", 0.5, 0.75, cat="comm", args={"bytes": 1024})
    doc = json.loads(trace.write(tmp_path / "sub" / "t.json").read_text())
    (s,) = check_chrome_trace(doc)
    assert s == {
        "ph": "X",
        "name": "bucket 0",
        "pid": 3,
        "tid": 1,
        "ts": 500_000.0,
        "dur": 250_000.0,
        "cat": "comm",
        "args": {"bytes": 1024},
    }
    names = {(e["name"], e["pid"], e["tid"]): e["args"] for e in doc["traceEvents"] if e["ph"] == "M"}
    assert names[("process_name", 3, 0)] == {"name": "rank 3"}
    assert names[("thread_name", 3, 1)] == {"name": "comm thread"}
    assert doc["metadata"] == {"note": "hello"}


@pytest.mark.parametrize("start, end", [(1.0, 0.5), (0.0, float("nan"))])
def test_a_slice_ending_before_it_starts_is_refused_naming_it(start, end):
    with pytest.raises(ValueError, match="'bad' on track \\(0, 2\\) ends at"):
        Trace().slice(0, 2, "bad", start, end)


def test_lanes_separate_overlapping_spans_with_as_few_lanes_as_possible():
    assert lanes([(0, 2), (1, 3), (2, 4), (3, 5)]) == [0, 1, 0, 1]
    assert lanes([(0, 10), (1, 2), (3, 4), (5, 6)]) == [0, 1, 1, 1]
    assert lanes([(0, 3), (1, 3), (2, 3)]) == [0, 1, 2]
    assert lanes([(5, 6), (0, 1)]) == [0, 0]  # input order does not matter
    assert lanes([]) == []


def _sim_records(result):
    """What the simulation did, per rank: messages sent and received, computations (times in microseconds)."""
    out = Counter()
    for kind, rank, peer, t0, t1, nbytes in result.events:
        if kind == "msg":
            out["send", rank, peer, round(t0 * 1e6, 6), round(t1 * 1e6, 6), nbytes] += 1
            out["recv", peer, rank, round(t0 * 1e6, 6), round(t1 * 1e6, 6), nbytes] += 1
        else:
            out[kind, rank, -1, round(t0 * 1e6, 6), round(t1 * 1e6, 6), nbytes] += 1
    return out


def _trace_records(slices):
    out = Counter()
    for e in slices:
        a = e["args"]
        kind = e["cat"]
        peer = a.get("to", a.get("from", -1))
        out[kind, e["pid"], peer, round(e["ts"], 6), round(e["ts"] + e["dur"], 6), a["bytes"]] += 1
    return out


def test_ring_trace_has_every_message_of_the_simulation_on_both_ranks():
    p, n = 4, 1 << 20
    result = simulate("ring", p, n, timeline=True)
    slices = check_chrome_trace(sim_trace(result).as_json())
    assert _trace_records(slices) == _sim_records(result)
    # the ring by hand: every rank sends and receives 2(p-1) chunks of n/p bytes and reduces p-1 of them
    for r in range(p):
        mine = [e for e in slices if e["pid"] == r]
        assert sorted(Counter(e["cat"] for e in mine).items()) == [("recv", 6), ("reduce", 3), ("send", 6)]
        assert {e["args"]["bytes"] for e in mine} == {n // p}
        assert {e["args"]["to"] for e in mine if e["cat"] == "send"} == {(r + 1) % p}
    assert max(e["ts"] + e["dur"] for e in slices) == pytest.approx(result.time * 1e6)


def test_concurrent_messages_of_one_rank_get_lanes_that_nest(tmp_path, capsys):
    path = tmp_path / "naive.json"
    assert main(["run", "naive", "--ranks", "6", "--size", "64K", "--model", "abg", "--trace", str(path)]) == 0
    assert f"trace: {path}" in capsys.readouterr().out
    doc = json.loads(path.read_text())
    slices = check_chrome_trace(doc)  # overlapping sends would fail the nesting check on one track
    threads = {e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"}
    assert "send 2" in threads  # naive sends to all others at once under abg: several send lanes
    assert doc["metadata"]["algorithm"] == "naive" and len({e["pid"] for e in slices}) == 6


def test_large_runs_keep_an_even_sample_of_ranks_and_say_so():
    result = simulate("ring", 128, 1 << 16, timeline=True)
    doc = sim_trace(result).as_json()
    pids = {e["pid"] for e in check_chrome_trace(doc)}
    assert len(pids) == 64 and {0, 127} <= pids
    assert doc["metadata"]["ranks_shown"] == 64 and "64 of 128" in doc["metadata"]["note"]
    # above the sample, how many of all 128 ranks are busy: counted here from the simulation's events
    counters = [e for e in doc["traceEvents"] if e["ph"] == "C"]
    assert len(counters) == 2001 and {e["pid"] for e in counters} == {128}
    assert {"name": "all 128 ranks"} in [e["args"] for e in doc["traceEvents"] if e["name"] == "process_name"]
    for e in counters[1:-1:250]:
        t = e["ts"] / 1e6
        sending = {r for kind, r, _, t0, t1, _ in result.events if kind == "msg" and t0 <= t < t1}
        receiving = {q for kind, _, q, t0, t1, _ in result.events if kind == "msg" and t0 <= t < t1}
        reducing = {r for kind, r, _, t0, t1, _ in result.events if kind == "reduce" and t0 <= t < t1}
        assert e["args"] == {"sending": len(sending), "receiving": len(receiving), "reducing": len(reducing)}, t
    assert max(e["args"]["sending"] for e in counters) == 128  # the ring: every rank sends at once
    assert "C" not in {e["ph"] for e in sim_trace(simulate("ring", 8, 1 << 16, timeline=True)).events}
    few = sim_trace(result, max_slices=4 * 5 * 127).as_json()  # each ring rank has 5 x 127 slices
    assert len({e["pid"] for e in few["traceEvents"] if e["ph"] == "X"}) == 4


def test_cli_names_a_trace_per_algorithm_and_refuses_a_trace_of_a_closed_form(tmp_path, capsys):
    path = tmp_path / "t.json"
    assert main(["run", "ring,tree", "--ranks", "4", "--size", "1K", "--trace", str(path)]) == 0
    assert (tmp_path / "t-ring-p4.json").exists() and (tmp_path / "t-tree-p4.json").exists()
    capsys.readouterr()
    assert main(["run", "ring", "--ranks", "4", "--size", "1K", "--method", "formula", "--trace", str(path)]) == 2
    assert "--trace needs the simulation" in capsys.readouterr().err
