"""The one error the expression language raises."""

from __future__ import annotations


class ExprError(ValueError):
    """A condition or field path that does not compile, located by a 1-based column (and line, for text
    spanning several lines) within its own text.

    It is a ValueError, so raised from a config struct's ``__post_init__`` it becomes a config error
    naming the file, the line and the key.
    """

    def __init__(self, message: str, column: int, line: int = 1) -> None:
        self.message = message
        self.column = column
        self.line = line
        super().__init__(message, column, line)

    @classmethod
    def at(cls, message: str, text: str, offset: int) -> ExprError:
        """An error at character ``offset`` of ``text`` (the end of the text if beyond it)."""
        offset = min(max(offset, 0), len(text))
        line_start = text.rfind("\n", 0, offset) + 1
        return cls(message, offset - line_start + 1, text.count("\n", 0, offset) + 1)

    def located(self, key_line: int | None) -> str:
        """``line L, column C: message`` for a condition written at ``key_line`` of a YAML file.

        The line counts from the key's; the column counts within the condition's own text (where it
        spans several lines, a block scalar's first line of text is taken as the key's line + 1).
        """
        if key_line is None:
            return str(self)
        return f"line {key_line + self.line - 1}, column {self.column}: {self.message}"

    def __str__(self) -> str:
        where = f"line {self.line}, column {self.column}" if self.line > 1 else f"column {self.column}"
        return f"{where}: {self.message}"
