"""Game of 24 building blocks: checker, solver, generator, prompts, simulated reasoner."""

from __future__ import annotations

import random
from dataclasses import replace
from fractions import Fraction

import pytest

from cachesaver.testing import SimulatedLLM
from pipelines.checker import MAX_LENGTH, check_answer, extract_expression
from pipelines.methods import majority_answer
from pipelines.prompts import (
    ANSWER_EXAMPLES,
    EVALUATE_EXAMPLES,
    PROPOSE_EXAMPLE,
    GameRequest,
    answer_prompt,
    evaluate_prompt,
    parse_judgement,
    parse_steps,
    propose_prompt,
    query_of,
)
from pipelines.puzzles import Puzzle, generate_puzzles, is_solvable, solutions
from pipelines.simulated import MODEL_NAME, Profile, SimulatedReasoner, simulated_model
from pipelines.tokens import count_tokens

# -- checker ---------------------------------------------------------------------------


def test_checker_accepts_a_correct_answer() -> None:
    """A correct expression using each number once is accepted with value 24."""
    verdict = check_answer("(13 - 9) * (10 - 4)", [4, 9, 10, 13])
    assert verdict.ok
    assert verdict.value == 24


def test_checker_uses_exact_fractions() -> None:
    """Division is exact, so a solution through 1/5 is recognised as 24."""
    assert check_answer("5 * (5 - 1 / 5)", [1, 5, 5, 5]).ok


def test_checker_rejects_wrong_arithmetic() -> None:
    """An expression that does not evaluate to 24 is rejected and its value reported."""
    verdict = check_answer("(13 - 9) * (10 + 4)", [4, 9, 10, 13])
    assert not verdict.ok
    assert verdict.value == Fraction(56)
    assert "not 24" in verdict.reason


def test_checker_rejects_a_reused_number() -> None:
    """Using a number twice (and another not at all) is rejected even if it makes 24."""
    verdict = check_answer("4 * 6 * (2 - 1)", [4, 6, 1, 1])
    assert not verdict.ok
    assert "exactly once" in verdict.reason


def test_checker_rejects_a_missing_or_foreign_number() -> None:
    """Leaving a number out, or bringing in one from outside the puzzle, is rejected."""
    assert not check_answer("4 * 6", [4, 6, 1, 1]).ok
    assert not check_answer("4 * 6 * 1 * 1 * 1", [4, 6, 1, 1]).ok


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('echo hacked')",
        "__import__('os')",
        "().__class__.__bases__[0]",
        "(lambda: 24)()",
        "open('/etc/passwd')",
        "[4, 6, 1, 1] and 24",
        "2 ** 4 + 8",
        "24 if 1 else 0",
        "-(1 - 25)",
        "0x18",
        "1_3 + 11",
        "24.0",
        "True * 24",
        "x",
        "(4 + 6",
        "4 + 6 = 24",
        "\x00",
    ],
)
def test_checker_rejects_code_and_non_arithmetic(expression: str) -> None:
    """Anything but decimal integers, + - * / and parentheses is refused without running it."""
    verdict = check_answer(expression, [4, 6, 1, 1])
    assert not verdict.ok


def test_checker_never_evaluates_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """A call to __import__ in the answer is parsed, never executed."""
    calls: list[str] = []

    def spy(name: str, *args: object, **kwargs: object) -> object:
        calls.append(name)
        raise AssertionError("the checker imported something")

    monkeypatch.setattr("builtins.__import__", spy)
    verdict = check_answer("__import__('os').system('true')", [1, 2, 3, 4])
    monkeypatch.undo()
    assert not verdict.ok
    assert calls == []


def test_checker_rejects_division_by_zero_and_huge_input() -> None:
    """Division by zero and over-long inputs are rejected with a reason, not an exception."""
    assert check_answer("4 / (6 - 6) + 1", [4, 6, 6, 1]).reason == "division by zero"
    assert not check_answer("(" * 150 + "1" + ")" * 150, [1]).ok
    assert "longer" in check_answer("1+" * MAX_LENGTH + "1", [1]).reason
    assert not check_answer(None, [1, 2, 3, 4]).ok


def test_extract_expression_takes_the_last_answer_line() -> None:
    """The expression is the left side of the last ``Answer:`` line, with x and / normalised."""
    text = "Answer: 1 + 1 = 2\nthinking...\nAnswer: (13 \u2212 9) \u00d7 6 = 24"
    assert extract_expression("Answer: (1 + 2) * 8 = 24") == "(1 + 2) * 8"
    assert extract_expression("answer:  4 \u00f7 1 * 6") == "4 / 1 * 6"
    assert extract_expression("no answer here") is None
    assert extract_expression(text) == "(13 - 9) * 6"


# -- solver and generator ----------------------------------------------------------------


def test_solver_knows_solvable_and_unsolvable_sets() -> None:
    """The solver finds fraction-only solutions and rejects impossible sets."""
    assert is_solvable([1, 5, 5, 5])
    assert is_solvable([3, 3, 8, 8])
    assert not is_solvable([1, 1, 1, 1])
    assert not is_solvable([])
    assert is_solvable([24]) and not is_solvable([23])


def test_solutions_are_valid_expressions() -> None:
    """Every expression the solver returns passes the checker, also for partial states."""
    for numbers in ([3, 3, 8, 8], [1, 5, 5, 5], [4, 9, 10, 13]):
        found = solutions(numbers, 3)
        assert found
        assert all(check_answer(text, numbers).ok for text in found)
    completed = solutions([(Fraction(4), "(13 - 9)"), 6], 1)[0]
    assert check_answer(completed, [13, 9, 6]).ok


def test_generated_puzzles_are_all_solvable() -> None:
    """Every generated puzzle has four numbers 1-13 and a solution the checker accepts."""
    puzzles = generate_puzzles(60)
    assert len({p.numbers for p in puzzles}) == 60
    for puzzle in puzzles:
        assert len(puzzle.numbers) == 4
        assert all(1 <= n <= 13 for n in puzzle.numbers)
        assert check_answer(solutions(puzzle.numbers)[0], puzzle.numbers).ok


def test_generator_is_deterministic() -> None:
    """The same seed gives the same puzzles; a smaller set is a prefix; another seed differs."""
    assert generate_puzzles(20, seed=3) == generate_puzzles(20, seed=3)
    assert generate_puzzles(5, seed=3) == generate_puzzles(20, seed=3)[:5]
    assert generate_puzzles(20, seed=3) != generate_puzzles(20, seed=4)
    with pytest.raises(ValueError):
        generate_puzzles(0)


def test_puzzle_id_and_text() -> None:
    """A puzzle's id (used in its namespace) and text are derived from its numbers."""
    puzzle = Puzzle((1, 5, 5, 13))
    assert puzzle.id == "1-5-5-13"
    assert puzzle.text == "1 5 5 13"


# -- prompts -------------------------------------------------------------------------------


def test_few_shot_examples_are_correct() -> None:
    """The examples shown to the model are themselves right (arithmetic and verdicts)."""
    for step in parse_steps(PROPOSE_EXAMPLE):
        value = {"+": step.a + step.b, "-": step.a - step.b, "*": step.a * step.b}.get(
            step.op, Fraction(step.a, step.b)
        )
        assert value == step.result
        rest = [3, 5, 7, 12]
        rest.remove(step.a)
        rest.remove(step.b)
        assert sorted([*rest, step.result]) == list(step.left)
    for block in EVALUATE_EXAMPLES.split("\n\n"):
        lines = block.splitlines()
        numbers = [int(n) for n in lines[0].removeprefix("Input: ").split()]
        verdict = lines[-1]
        assert (verdict != "impossible") == is_solvable(numbers), block
    for block in ANSWER_EXAMPLES.split("\n\n"):
        numbers = [int(n) for n in block.splitlines()[0].removeprefix("Input: ").split()]
        assert check_answer(extract_expression(block), numbers).ok


def test_prompts_show_the_query_last_and_sorted() -> None:
    """The query block is the last ``Input:`` block, with the numbers sorted."""
    assert query_of(propose_prompt([10, 2, 4]))[0] == "Input: 2 4 10"
    assert query_of(evaluate_prompt([6, 4]))[0] == "Input: 4 6"
    steps = ["4 + 6 = 10 (left: 1 1 10)"]
    assert query_of(answer_prompt([6, 4, 1, 1], steps)) == [
        "Input: 1 1 4 6",
        "Steps:",
        *steps,
        "Answer:",
    ]


def test_parsers_read_steps_and_judgements() -> None:
    """Well-formed step lines are parsed (claims kept as written); junk lines are skipped."""
    steps = parse_steps(
        "4 + 6 = 11 (left: 11 2 1)\nnonsense\n3 * 8 = 24 (left: )\n13 - 9 = 4 (left: 4)"
    )
    assert [(s.a, s.op, s.b, s.result, s.left) for s in steps] == [
        (4, "+", 6, 11, (1, 2, 11)),
        (13, "-", 9, 4, (4,)),
    ]
    odd = parse_steps("3 - 7 = -4 (left: -4 - 5)")
    assert [(s.result, s.left) for s in odd] == [(-4, (-4, 5))]
    assert parse_judgement("3 * 8 = 24\nsure") == 20.0
    assert parse_judgement("hmm, likely? no: impossible") == 0.001
    assert parse_judgement("no verdict") == 0.0


def test_game_request_fields_are_part_of_the_key() -> None:
    """``kind`` and ``temperature`` change the request's content; ``n`` does not."""
    from cachesaver.typedefs import request_content

    base = GameRequest("p", kind="answer", temperature=0.7)
    assert request_content(base) == request_content(GameRequest("p", kind="answer", n=5))
    assert request_content(base) != request_content(GameRequest("p", kind="evaluate"))
    assert request_content(base) != request_content(GameRequest("p", temperature=0.0))


# -- simulated reasoner ---------------------------------------------------------------------


def test_simulated_samples_carry_their_token_counts() -> None:
    """Each sample reports count_tokens of its prompt and of its text."""
    reasoner = SimulatedReasoner()
    rng = random.Random(1)
    for request in (
        GameRequest(propose_prompt([2, 3, 4, 8]), kind="propose"),
        GameRequest(evaluate_prompt([3, 8]), kind="evaluate"),
        GameRequest(answer_prompt([2, 3, 4, 8]), kind="answer"),
    ):
        sample = reasoner(request, rng)
        assert sample["prompt_tokens"] == count_tokens(request.prompt)
        assert sample["completion_tokens"] == count_tokens(sample["text"])
        assert sample["completion_tokens"] > 0


def test_simulated_proposals_are_parseable_and_mostly_right() -> None:
    """Proposals parse as steps; with error rates at zero, every step is exact."""
    exact = SimulatedReasoner(Profile(arithmetic_error=0.0, bookkeeping_error=0.0))
    rng = random.Random(0)
    low, high = Profile().steps[4]
    for _ in range(20):
        steps = parse_steps(exact.propose([2, 3, 4, 8], rng))
        assert low - 2 <= len(steps) <= high + 1
        for step in steps:
            value = {"+": step.a + step.b, "-": step.a - step.b, "*": step.a * step.b}.get(
                step.op, step.a // max(step.b, 1)
            )
            assert value == step.result
            assert len(step.left) == 3


def test_simulated_answer_follows_correct_steps() -> None:
    """Given correct steps ending in 24, the reasoner usually writes a valid expression."""
    reasoner = SimulatedReasoner()
    steps = parse_steps("13 - 9 = 4 (left: 4 4 10)\n10 - 4 = 6 (left: 4 6)\n4 * 6 = 24 (left: 24)")
    rng = random.Random(0)
    answers = [reasoner.answer([4, 9, 10, 13], steps, rng) for _ in range(50)]
    valid = sum(check_answer(extract_expression(a), [4, 9, 10, 13]).ok for a in answers)
    assert valid >= 40


def test_simulated_answer_carries_step_mistakes_into_the_answer() -> None:
    """A wrong step (4 + 6 = 11) makes the final expression fail the checker."""
    reasoner = SimulatedReasoner(Profile(answer_success=(1.0,) * 5))
    steps = parse_steps(
        "4 + 6 = 11 (left: 1 1 11)\n11 + 1 = 12 (left: 1 12)\n12 * 1 = 12 (left: 12)"
    )
    rng = random.Random(0)
    for _ in range(10):
        text = reasoner.answer([1, 1, 4, 6], steps, rng)
        assert not check_answer(extract_expression(text), [1, 1, 4, 6]).ok


async def test_simulated_model_is_seeded() -> None:
    """The same seed gives the same samples; the model declares its name and seed."""
    request = GameRequest(propose_prompt([1, 2, 3, 4]), kind="propose", n=3)
    first = await simulated_model(seed=5).request(request)
    second = await simulated_model(seed=5).request(request)
    other = await simulated_model(seed=6).request(request)
    assert first.data == second.data
    assert first.data != other.data
    model = simulated_model(seed=5)
    assert isinstance(model, SimulatedLLM)
    assert model.identity["model"] == MODEL_NAME and model.identity["seed"] == 5


def test_majority_answer_votes_on_expressions() -> None:
    """The most common expression wins (spacing ignored); ties go to the earliest."""
    texts = ["Answer: 1 + 2 = 24", "Answer: 3*8 = 24", "Answer: 3 * 8 = 24", "junk"]
    assert majority_answer(texts) == "Answer: 3*8 = 24"
    assert majority_answer(["Answer: a", "Answer: b"]) == "Answer: a"
    assert majority_answer(["junk"]) == "junk"
    assert majority_answer([]) == ""


async def test_simulated_samples_do_not_depend_on_how_calls_are_split() -> None:
    """The k-th sample of a question is the same whether drawn as n=3 or as n=1 then n=2."""
    request = GameRequest(propose_prompt([1, 2, 3, 4]), kind="propose")
    together = await simulated_model(seed=1).request(replace(request, n=3))
    split = simulated_model(seed=1)
    first = await split.request(replace(request, n=1))
    rest = await split.request(replace(request, n=2))
    assert together.data == first.data + rest.data


def test_simulated_statistics_match_the_real_model() -> None:
    """On the benchmark's puzzles, the simulator's statistics stay near GPT-4's measured ones."""
    from pipelines.calibration import TARGETS, measure
    from pipelines.puzzles import load_puzzles

    ours = measure(load_puzzles(20))
    for name, target in TARGETS.items():
        if name.startswith(
            ("verdict share", "steps per proposal, 2", "steps keeping 24 in reach, from 2")
        ):
            continue  # depend on which states are sampled, or on moves we do not model
        assert abs(ours[name] - target) <= max(0.12, 0.25 * target), (name, ours[name], target)


def test_evaluation_samples_of_one_state_mostly_agree() -> None:
    """The model holds a belief per state: three samples agree far more often than chance."""
    reasoner = SimulatedReasoner(seed=3)
    rng = random.Random(0)
    agree = 0
    states = [[1, 5, 7], [2, 3, 9], [4, 6, 11], [3, 3, 8], [5, 5, 13], [1, 2, 10]] * 5
    for numbers in states:
        verdicts = {reasoner.evaluate(numbers, rng).splitlines()[-1] for _ in range(3)}
        agree += len(verdicts) == 1
    assert agree >= 0.6 * len(states)


def test_load_puzzles_reads_the_benchmark_ranks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Default ranks 901-1000 in order; a bad range or a malformed file is a clear error."""
    from pipelines.puzzles import load_puzzles

    puzzles = load_puzzles()
    assert [p.rank for p in puzzles] == list(range(901, 1001))
    assert puzzles[0].numbers == (4, 5, 6, 10) and puzzles[0].id == "r901"
    assert all(is_solvable(p.numbers) for p in puzzles)
    with pytest.raises(ValueError, match="ranks 1-1362"):
        load_puzzles(100, first_rank=1300)
    bad = tmp_path / "bad.csv"
    bad.write_text("rank,numbers\n1,1 2 x 4\n")
    with pytest.raises(ValueError, match="line 2"):
        load_puzzles(1, 1, bad)
    with pytest.raises(ValueError, match="cannot read"):
        load_puzzles(1, 1, tmp_path / "missing.csv")
