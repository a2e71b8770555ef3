"""The simulated model's statistics beside a real model's on the same task.

``TARGETS`` are measured on the public Tree of Thoughts logs of GPT-4 (temperature 0.7)
on ranks 901-1000 (princeton-nlp/tree-of-thought-llm, ``logs/game24/``:
``gpt-4_0.7_propose1_value3_greedy5_start900_end1000.json`` for proposals and values,
``gpt-4_0.7_naive_standard_sample_100_start900_end1000.json`` for 100 direct answers per
puzzle). `measure` computes the same statistics for the simulated reasoner on the same
puzzles; ``python -m pipelines.calibration`` prints both (docs/pipelines.md has the table).
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from collections.abc import Sequence

from pipelines.checker import check_answer, extract_expression
from pipelines.prompts import parse_judgement, parse_steps
from pipelines.puzzles import Puzzle, is_solvable, load_puzzles
from pipelines.simulated import SimulatedReasoner

__all__ = ["TARGETS", "main", "measure"]

TARGETS: dict[str, float] = {
    "steps per proposal, 4 numbers": 9.47,
    "steps per proposal, 3 numbers": 6.37,
    "steps per proposal, 2 numbers": 4.09,
    "steps keeping 24 in reach, from 4 numbers": 0.25,
    "steps keeping 24 in reach, from 3 numbers": 0.063,
    "steps keeping 24 in reach, from 2 numbers": 0.091,
    "moves shared by two proposals of one state, 3 numbers": 0.845,
    "moves shared by two proposals of one state, 2 numbers": 0.944,
    "3 evaluation samples agree, 3 numbers left": 0.879,
    "3 evaluation samples agree, 2 numbers left": 0.652,
    "3 evaluation samples agree, 1 number left": 0.960,
    "verdict share: sure": 0.105,
    "verdict share: likely": 0.299,
    "verdict share: impossible": 0.596,
    "direct answers: distinct per 100 samples": 0.125,
    "direct answers: share of the most common": 0.546,
    "direct answers: correct": 0.073,
}


def _states(puzzles: Sequence[Puzzle], reasoner: SimulatedReasoner) -> dict[int, list[list[int]]]:
    """States with 4, 3 and 2 numbers reached by the reasoner's favoured moves."""
    found: dict[int, list[list[int]]] = {4: [], 3: [], 2: [], 1: []}
    for puzzle in puzzles:
        frontier = [list(puzzle.numbers)]
        while frontier:
            numbers = frontier.pop()
            found[len(numbers)].append(numbers)
            if len(numbers) > 1:
                frontier.extend(list(left) for _, left in reasoner.repertoire(numbers)[:2])
    return found


def measure(puzzles: Sequence[Puzzle], seed: int = 0) -> dict[str, float]:
    """Return the simulated reasoner's value of every statistic in ``TARGETS``."""
    reasoner = SimulatedReasoner(seed=seed)
    rng = random.Random(seed)
    states = _states(puzzles, reasoner)
    stats: dict[str, float] = {}
    verdicts: Counter[float] = Counter()
    for count in (4, 3, 2):
        proposals = [parse_steps(reasoner.propose(n, rng)) for n in states[count]]
        steps = [s for p in proposals for s in p]
        stats[f"steps per proposal, {count} numbers"] = len(steps) / len(proposals)
        useful = sum(is_solvable(step.left) for step in steps) / len(steps)
        stats[f"steps keeping 24 in reach, from {count} numbers"] = useful
        if count < 4:
            shared = []
            for numbers in states[count]:
                a, b = (
                    {(s.a, s.op, s.b) for s in parse_steps(reasoner.propose(numbers, rng))}
                    for _ in range(2)
                )
                if a and b:
                    shared.append(len(a & b) / len(b))
            stats[f"moves shared by two proposals of one state, {count} numbers"] = sum(
                shared
            ) / len(shared)
    for count in (3, 2, 1):
        agree = 0
        for numbers in states[count]:
            scores = [parse_judgement(reasoner.evaluate(numbers, rng)) for _ in range(3)]
            verdicts.update(scores)
            agree += len(set(scores)) == 1
        label = "numbers" if count > 1 else "number"
        stats[f"3 evaluation samples agree, {count} {label} left"] = agree / len(states[count])
    total = sum(verdicts.values())
    for word, score in (("sure", 20.0), ("likely", 1.0), ("impossible", 0.001)):
        stats[f"verdict share: {word}"] = verdicts[score] / total
    distinct, top, correct = [], [], []
    for puzzle in puzzles:
        answers = [reasoner.answer(list(puzzle.numbers), [], rng) for _ in range(100)]
        keys = Counter("".join((extract_expression(a) or "").split()) for a in answers)
        distinct.append(len(keys) / 100)
        top.append(keys.most_common(1)[0][1] / 100)
        right = sum(check_answer(extract_expression(a), puzzle.numbers).ok for a in answers)
        correct.append(right / 100)
    stats["direct answers: distinct per 100 samples"] = sum(distinct) / len(distinct)
    stats["direct answers: share of the most common"] = sum(top) / len(top)
    stats["direct answers: correct"] = sum(correct) / len(correct)
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    """Print the simulated model's statistics beside GPT-4's (ranks 901-1000)."""
    count = int(argv[0]) if argv else 100
    ours = measure(load_puzzles(count))
    width = max(len(name) for name in TARGETS)
    print(f"{'statistic'.ljust(width)}  GPT-4 (ToT logs)  simulated")
    for name, target in TARGETS.items():
        print(f"{name.ljust(width)}  {target:16.3f}  {ours[name]:9.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
