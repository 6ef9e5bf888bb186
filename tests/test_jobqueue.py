"""A lane's queue on its own: lower priority numbers first, FIFO within a priority, and batch
removal that keeps the order of what stays (a unit test of ``run/jobqueue.py``'s contract)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from lanepar.run.jobqueue import JobQueue


def drain(q: JobQueue[str]) -> list[str]:
    out = []
    while q:
        nxt = q.peek()
        out.append(q.pop())
        assert out[-1] == nxt  # peek names what pop takes, and leaves it queued until then
    assert q.peek() is None
    return out


def test_empty_queue() -> None:
    q: JobQueue[str] = JobQueue()
    assert len(q) == 0 and not q and q.n == 0
    q.push([(0, "one")])
    assert q and len(q) == 1
    q.pop()
    assert not q
    assert q.push([]) == 0
    assert q.remove_if(lambda j: True) == []
    assert len(q) == 0


def test_lower_priority_numbers_first_and_fifo_within_one() -> None:
    q: JobQueue[str] = JobQueue()
    assert q.push([(2, "c1"), (0, "a1"), (2, "c2"), (1, "b1")]) == 4
    assert q.push([(0, "a2"), (-5, "z"), (1, "b2")]) == 3
    assert len(q) == 7 and q
    assert drain(q) == ["z", "a1", "a2", "b1", "b2", "c1", "c2"]
    assert len(q) == 0 and not q


def test_a_priority_emptied_and_refilled_keeps_its_place() -> None:
    q: JobQueue[str] = JobQueue()
    q.push([(1, "x"), (3, "y")])
    assert q.pop() == "x"
    q.push([(1, "x2"), (2, "m")])
    assert drain(q) == ["x2", "m", "y"]


def test_remove_if_takes_matching_jobs_and_keeps_order_of_the_rest() -> None:
    q: JobQueue[str] = JobQueue()
    q.push([(1, "a1"), (1, "b1"), (0, "a0"), (2, "b2"), (1, "a2"), (2, "a3")])
    removed = q.remove_if(lambda j: j.startswith("b"))
    assert removed == ["b1", "b2"]
    assert len(q) == 4
    q.push([(2, "b3")])
    assert drain(q) == ["a0", "a1", "a2", "a3", "b3"]


def test_remove_if_can_empty_priorities() -> None:
    q: JobQueue[str] = JobQueue()
    q.push([(0, "x"), (1, "y"), (0, "x2")])
    assert q.remove_if(lambda j: j.startswith("x")) == ["x", "x2"]
    assert len(q) == 1
    q.push([(0, "new")])
    assert drain(q) == ["new", "y"]


@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans()), max_size=60))
def test_matches_a_stable_sort(items: list[tuple[int, bool]]) -> None:
    """Against the obvious model: a stable sort by priority; removal is a filter."""
    q: JobQueue[str] = JobQueue()
    jobs = [(p, f"{i}{'r' if drop else ''}") for i, (p, drop) in enumerate(items)]
    rng = random.Random(len(items))
    cut = rng.randint(0, len(jobs))
    q.push(jobs[:cut])
    q.push(jobs[cut:])
    removed = q.remove_if(lambda j: j.endswith("r"))
    model = sorted(jobs, key=lambda pj: pj[0])
    assert removed == [j for _, j in model if j.endswith("r")]
    assert len(q) == len(jobs) - len(removed)
    assert drain(q) == [j for _, j in model if not j.endswith("r")]


@given(
    st.lists(st.tuples(st.integers(0, 2), st.booleans()), max_size=30),
    st.integers(0, 10),
)
def test_take_first_looks_only_a_few_jobs_into_the_first_priority(
    items: list[tuple[int, bool]], within: int
) -> None:
    """What a lane hands to a thread as jobs are queued: the first matching job among the next
    ``within`` of the first priority — never one of a later priority, never one further back —
    and the rest keep their order."""
    q: JobQueue[tuple[int, int, bool]] = JobQueue()
    jobs = [(prio, i, hot) for i, (prio, hot) in enumerate(items)]
    q.push((prio, job) for job in jobs for prio in [job[0]])
    order = sorted(jobs, key=lambda j: (j[0], j[1]))
    head = [j for j in order if order and j[0] == order[0][0]][:within]
    expected = next((j for j in head if j[2]), None)
    got = q.take_first(lambda j: j[2], within)
    assert got == expected
    rest = [j for j in order if j != got]
    assert len(q) == len(rest) and [q.pop() for _ in range(len(q))] == rest


@given(st.lists(st.tuples(st.integers(-3, 3), st.integers(0, 99)), max_size=30), st.integers(-3, 3))
def test_push_front_goes_first_whatever_the_priorities(
    items: list[tuple[int, int]], prio: int
) -> None:
    """A sequence's next job whose body already runs takes the next free slot; everything else
    keeps its order."""
    q: JobQueue[str] = JobQueue()
    q.push([(p, f"{p}:{i}") for p, i in items])
    expected = [f"{p}:{i}" for p, i in sorted(items, key=lambda pi: pi[0])]  # stable: FIFO
    assert q.push_front([(prio, "next")]) == 1
    assert len(q) == len(items) + 1
    assert drain(q) == ["next", *expected]
