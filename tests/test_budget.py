"""The one budget check (mcuformer.budget.Budget) used by the search, the space sizing and export."""

from __future__ import annotations

from mcuformer.boards import get_board
from mcuformer.budget import Budget


def test_a_model_fits_up_to_the_last_byte_of_each_resource() -> None:
    budget = Budget(sram_bytes=1000, flash_bytes=5000)
    assert budget.fits(1000, 5000) and budget.over(1000, 5000) == []
    assert not budget.fits(1001, 5000) and budget.over(1001, 5000) == [("sram", 1001, 1000)]
    assert not budget.fits(1000, 5001) and budget.over(1000, 5001) == [("flash", 5001, 5000)]
    assert budget.over(2000, 6000) == [("sram", 2000, 1000), ("flash", 6000, 5000)]


def test_a_boards_budget_is_its_memory_or_the_requested_limit() -> None:
    board = get_board("NUCLEO-F412ZG")
    assert Budget.of(board) == Budget(board.sram_bytes, board.flash_bytes, board.name)
    limited = board.with_budget(6 * 1024, 96 * 1024)
    assert Budget.of(limited) == Budget(6 * 1024, 96 * 1024, board.name)
