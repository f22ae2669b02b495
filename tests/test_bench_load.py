"""The bench's sum of runs taken in turns (bench/load.py): what `make bench` sets the console
against the floor with."""

from __future__ import annotations

from bench.load import Result, combined, percentile


def _run(requests: int, seconds: float, latencies: dict[int, int], errors: int = 0) -> Result:
    ordered = tuple(sorted(latencies.items()))
    return Result(
        requests=requests,
        seconds=seconds,
        bytes=requests * 1000,
        p50_ms=percentile(ordered, 50) / 1000,
        p99_ms=percentile(ordered, 99) / 1000,
        errors=errors,
        error_detail=f"timeout {errors}" if errors else "",
        latencies=ordered,
    )


def test_percentile_ranks_as_wrk_does() -> None:
    # wrk: the first value whose running count reaches round(p/100 * count + 0.5).
    ten = [(value, 1) for value in range(10, 101, 10)]
    assert percentile(ten, 50) == 60
    assert percentile(ten, 99) == 100
    assert percentile(ten, 90) == 100
    assert percentile(ten, 89) == 90
    assert percentile([(5, 3), (7, 1)], 75) == 7
    assert percentile([(5, 3), (7, 1)], 74) == 5
    assert percentile([], 99) == 0


def test_turns_are_summed_into_one_run() -> None:
    # Two quick turns and a slow one: the rate is all requests over all the time (not the
    # mean of three rates), and p99 is over all the latencies (not the worst turn's p99).
    quick = _run(1000, 5.0, {40_000: 990, 50_000: 10})
    slow = _run(200, 10.0, {100_000: 195, 300_000: 5}, errors=2)
    assert slow.p99_ms == 300.0
    summed = combined([quick, slow, quick])
    assert summed.requests == 2200
    assert summed.seconds == 20.0
    assert summed.rps == 110.0
    assert summed.bytes == 2_200_000
    assert summed.errors == 2 and summed.error_detail == "timeout 2"
    assert summed.latencies == ((40_000, 1980), (50_000, 20), (100_000, 195), (300_000, 5))
    assert summed.p50_ms == 40.0
    # 2,200 latencies: the 99th percentile is the 2,179th; the slowest 5 come after 2,195.
    assert summed.p99_ms == 100.0
    assert combined([quick]).p99_ms == quick.p99_ms == 50.0
