"""A restricted evaluator for the shell files ``grub-mkconfig`` sources (/etc/default/grub, grub.d/*.cfg).

These files are shell: grub-mkconfig runs them with ``.`` in its own process. The harness never executes
them: a snapshot attached to a bug report may hold anything, running a host's files as root to learn a
variable is a needless risk, and a verdict must name the file and line behind every kernel argument, which
running them cannot tell. So this evaluates what such files hold in practice, the way the shell does:
assignments (also ``export``ed, several on a line), single and double quotes, backslashes, continuation
lines, ``$VAR`` / ``${VAR}`` expansions (unset ones are empty, assignments do not split words) and comments.
Any other construct (a command, ``$(...)``, backticks, ``${VAR:-x}``, ``if``) is recorded as not evaluated,
so a verdict resting on such a file can say so instead of guessing. tests/test_boot_paths.py checks this
evaluator against ``bash`` itself on the committed fixtures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD_END = " \t\n;&|<>()"


@dataclass(frozen=True)
class Origin:
    """Where a piece of text was written: a file and a 1-based line number."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path} line {self.line}"


@dataclass(frozen=True)
class Piece:
    text: str
    origin: Origin


Value = tuple[Piece, ...]


@dataclass(frozen=True)
class Word:
    """One whitespace-separated word of a value, with where its first character was written."""

    text: str
    origin: Origin


@dataclass(frozen=True)
class Assignment:
    key: str
    origin: Origin
    value: Value

    @property
    def text(self) -> str:
        return "".join(piece.text for piece in self.value)


@dataclass(frozen=True)
class Unevaluated:
    """A statement this evaluator does not run; what it would do is unknown."""

    origin: Origin
    text: str
    why: str


class _Unsupported(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


@dataclass
class ShellVariables:
    """Shell variables after sourcing files in order, each value knowing where its text came from."""

    values: dict[str, Value] = field(default_factory=dict)
    assignments: list[Assignment] = field(default_factory=list)
    unevaluated: list[Unevaluated] = field(default_factory=list)
    sourced: list[str] = field(default_factory=list)

    def text(self, key: str) -> str:
        return "".join(piece.text for piece in self.values.get(key, ()))

    def words(self, *keys: str) -> list[Word]:
        """The values of ``keys`` joined by spaces and split into words, as ``linux ... $A $B`` would."""
        words: list[Word] = []
        for key in keys:
            current: list[str] = []
            origin: Origin | None = None
            for piece in self.values.get(key, ()):
                for char in piece.text:
                    if char.isspace():
                        if current and origin is not None:
                            words.append(Word("".join(current), origin))
                        current, origin = [], None
                    else:
                        if not current:
                            origin = piece.origin
                        current.append(char)
            if current and origin is not None:
                words.append(Word("".join(current), origin))
        return words

    def source(self, path: str, text: str) -> None:
        """Evaluate one file, as ``. path`` would, on top of what earlier files set."""
        self.sourced.append(path)
        _Evaluator(self, path, text).run()


class _Evaluator:
    def __init__(self, variables: ShellVariables, path: str, text: str) -> None:
        self.variables = variables
        self.path = path
        self.text = text
        self.position = 0
        self.line = 1

    def _peek(self, offset: int = 0) -> str:
        index = self.position + offset
        return self.text[index] if index < len(self.text) else ""

    def _advance(self, count: int = 1) -> None:
        for _ in range(count):
            if self._peek() == "\n":
                self.line += 1
            self.position += 1

    def _skip_blank(self) -> None:
        while True:
            char = self._peek()
            if char in (" ", "\t"):
                self._advance()
            elif char == "\\" and self._peek(1) == "\n":
                self._advance(2)
            else:
                return

    def _skip_to_line_end(self) -> str:
        start = self.position
        while self._peek() not in ("", "\n"):
            self._advance()
        return self.text[start : self.position]

    def run(self) -> None:
        while self.position < len(self.text):
            self._skip_blank()
            char = self._peek()
            if char in ("\n", ";"):
                self._advance()
            elif char == "#":
                self._skip_to_line_end()
            elif char:
                self._statement()

    def _statement(self) -> None:
        start_position, start = self.position, Origin(self.path, self.line)
        pending: list[Assignment] = []
        try:
            first, exporting = True, False
            while self._peek() not in ("", "\n", ";", "#"):
                name = _NAME.match(self.text, self.position)
                if first and name and name.group() == "export" and self._peek(6) in (" ", "\t"):
                    self._advance(6)
                    exporting = True
                elif name and self._peek(name.end() - self.position) == "=":
                    origin = Origin(self.path, self.line)
                    self._advance(name.end() - self.position + 1)
                    pending.append(Assignment(name.group(), origin, self._word()))
                elif name and exporting and self._peek(name.end() - self.position) in ("", *_WORD_END):
                    self._advance(name.end() - self.position)  # export NAME: nothing to evaluate
                else:
                    raise _Unsupported("a command, not an assignment")
                first = False
                self._skip_blank()
        except _Unsupported as unsupported:
            self.position = start_position
            self.line = start.line
            self.variables.unevaluated.append(Unevaluated(start, self._skip_to_line_end(), unsupported.why))
            return
        for assignment in pending:
            self.variables.values[assignment.key] = assignment.value
            self.variables.assignments.append(assignment)

    def _word(self) -> Value:
        pieces: list[Piece] = []

        def literal(text: str) -> None:
            origin = Origin(self.path, self.line)
            if pieces and pieces[-1].origin == origin:
                pieces[-1] = Piece(pieces[-1].text + text, origin)
            else:
                pieces.append(Piece(text, origin))

        while (char := self._peek()) and char not in _WORD_END:
            if char == "'":
                self._advance()
                while self._peek() != "'":
                    if not self._peek():
                        raise _Unsupported("an unterminated single quote")
                    literal(self._peek())
                    self._advance()
                self._advance()
            elif char == '"':
                self._advance()
                while self._peek() != '"':
                    inner = self._peek()
                    if not inner:
                        raise _Unsupported("an unterminated double quote")
                    if inner == "\\" and self._peek(1) in ("$", "`", '"', "\\", "\n"):
                        if self._peek(1) != "\n":
                            literal(self._peek(1))
                        self._advance(2)
                    elif inner in ("$", "`"):
                        pieces.extend(self._expansion())
                    else:
                        literal(inner)
                        self._advance()
                self._advance()
            elif char == "\\":
                if self._peek(1) not in ("", "\n"):
                    literal(self._peek(1))
                self._advance(2)
            elif char in ("$", "`"):
                pieces.extend(self._expansion())
            else:
                literal(char)
                self._advance()
        return tuple(pieces)

    def _expansion(self) -> Value:
        if self._peek() == "`" or self._peek(1) == "(":
            raise _Unsupported("command substitution")
        self._advance()  # the $
        if self._peek() == "{":
            end = self.text.find("}", self.position)
            inner = self.text[self.position + 1 : end] if end != -1 else ""
            if not _NAME.fullmatch(inner):
                raise _Unsupported(f"the expansion ${{{inner}}}")
            self._advance(len(inner) + 2)
            return self.variables.values.get(inner, ())
        name = _NAME.match(self.text, self.position)
        if name is None:
            if self._peek() and not self._peek().isspace() and self._peek() not in "\"'":
                raise _Unsupported(f"the special parameter ${self._peek()}")
            return (Piece("$", Origin(self.path, self.line)),)
        self._advance(name.end() - self.position)
        return self.variables.values.get(name.group(), ())
