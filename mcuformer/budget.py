"""A memory budget (the SRAM and flash a model may use, on a board) and the one check against it."""

from __future__ import annotations

from dataclasses import dataclass

from mcuformer.boards import Board

RESOURCES = ("sram", "flash")  # peak SRAM (arena + stack + statics) and flash, in bytes


@dataclass(frozen=True)
class Budget:
    sram_bytes: int
    flash_bytes: int
    board: str = ""  # the board's name, for messages ("" when the budget is not a board's)

    @staticmethod
    def of(board: Board) -> Budget:
        """The budget of a board (its memory, or the smaller budget given with ``Board.with_budget``)."""
        return Budget(board.sram_bytes, board.flash_bytes, board.name)

    def over(self, sram_bytes: int, flash_bytes: int) -> list[tuple[str, int, int]]:
        """The resources a model needing ``sram_bytes`` and ``flash_bytes`` is over: (resource, need, have)."""
        needs = ((sram_bytes, self.sram_bytes), (flash_bytes, self.flash_bytes))
        return [(what, need, have) for what, (need, have) in zip(RESOURCES, needs, strict=True) if need > have]

    def fits(self, sram_bytes: int, flash_bytes: int) -> bool:
        return not self.over(sram_bytes, flash_bytes)
