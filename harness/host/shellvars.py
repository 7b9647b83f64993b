"""A restricted evaluator for the shell files ``grub-mkconfig`` sources (/etc/default/grub, grub.d/*.cfg).

These files are shell: grub-mkconfig runs them with ``.`` in its own process. The harness never executes
them: a snapshot attached to a bug report may hold anything, running a host's files as root to learn a
variable is a needless risk, and a verdict must name the file and line behind every kernel argument, which
running them cannot tell. So this evaluates what such files hold in practice, the way the shell does:
assignments (also ``export``ed, several on a line), single and double quotes, backslashes, continuation
lines, ``$VAR`` / ``${VAR}`` expansions (unset ones are empty, assignments do not split words), the POSIX
operators ``${VAR:-w}`` ``${VAR-w}`` ``${VAR:=w}`` ``${VAR=w}`` ``${VAR:+w}`` ``${VAR+w}`` and ``${VAR#p}``
``${VAR##p}`` ``${VAR%p}`` ``${VAR%%p}`` with a literal pattern, and comments. Any other construct (a command,
``$(...)``, backticks, ``$((...))``, ``${VAR:?w}``, a glob pattern, quotes inside a quoted ``${...}`` where
bash and dash differ, bash's ``$'...'`` which /bin/sh (dash) does not know, ``if``, ``.``) is recorded as not
evaluated, so a verdict resting on such a file can say so instead of guessing. tests/test_boot_paths.py checks
this evaluator against ``bash`` on the committed fixtures, tests/test_shellvars_vs_bash.py against bash and
dash on generated files.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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


def _append_literal(pieces: list[Piece], text: str, origin: Origin) -> None:
    """Literal text joins the piece before it when both come from the same line (one origin per run)."""
    if pieces and pieces[-1].origin == origin:
        pieces[-1] = Piece(pieces[-1].text + text, origin)
    else:
        pieces.append(Piece(text, origin))


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
        # `A=x B=$A` sees A=x (assignments run left to right), and ${VAR:=word} assigns while it expands; a
        # statement found unevaluable later must leave nothing behind, so everything is undone then.
        saved_values, saved_count = dict(self.variables.values), len(self.variables.assignments)
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
                    assignment = Assignment(name.group(), origin, self._word())
                    if exporting:  # export's arguments are all expanded before it runs
                        pending.append(assignment)
                    else:
                        self.variables.values[assignment.key] = assignment.value
                        self.variables.assignments.append(assignment)
                elif name and exporting and self._peek(name.end() - self.position) in ("", *_WORD_END):
                    self._advance(name.end() - self.position)  # export NAME: nothing to evaluate
                else:
                    raise _Unsupported("a command, not an assignment")
                first = False
                self._skip_blank()
        except _Unsupported as unsupported:
            self.variables.values = saved_values
            del self.variables.assignments[saved_count:]
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
            _append_literal(pieces, text, Origin(self.path, self.line))

        while (char := self._peek()) and char not in _WORD_END:
            if char == "'":
                self._single_quoted(literal)
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
                        pieces.extend(self._expansion(quoted=True))
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

    def _expansion(self, quoted: bool = False) -> Value:
        if self._peek() == "`" or self._peek(1) == "(":
            raise _Unsupported("command substitution")
        self._advance()  # the $
        if self._peek() == "{":
            return self._braced(quoted)
        name = _NAME.match(self.text, self.position)
        if name is None:
            if not quoted and self._peek() in ("'", '"'):
                # bash reads $'a\tb' as a C string, dash (Debian's /bin/sh) as "$" then 'a\tb': never guess
                raise _Unsupported(
                    f"bash's ${self._peek()}...{self._peek()} quoting, read differently by /bin/sh"
                )
            if self._peek() and not self._peek().isspace() and self._peek() not in "\"'":
                raise _Unsupported(f"the special parameter ${self._peek()}")
            return (Piece("$", Origin(self.path, self.line)),)
        self._advance(name.end() - self.position)
        return self.variables.values.get(name.group(), ())

    def _braced(self, quoted: bool) -> Value:
        """``${NAME}`` and ``${NAME<op>word}`` for op in ``:- - := = :+ + # ## % %%``, as POSIX sh does."""
        self._advance()  # the {
        name = _NAME.match(self.text, self.position)
        if name is None:
            raise _Unsupported(f"the expansion ${{{self._peek()}...}}")
        key = name.group()
        self._advance(name.end() - self.position)
        if self._peek() == "}":
            self._advance()
            return self.variables.values.get(key, ())
        operator = ""
        for candidate in (":-", ":=", ":+", "##", "%%", "-", "=", "+", "#", "%"):
            if self.text.startswith(candidate, self.position):
                operator = candidate
                break
        if not operator:
            raise _Unsupported(f"the expansion ${{{key}{self._peek()}...}}")
        self._advance(len(operator))
        word = self._operand(quoted)
        value = self.variables.values.get(key)
        is_set = value is not None
        non_empty = bool(value) and any(piece.text for piece in value or ())
        if operator in ("#", "##", "%", "%%"):
            pattern = "".join(piece.text for piece in word)
            if any(char in pattern for char in "*?[\\"):
                raise _Unsupported(f"the pattern in ${{{key}{operator}...}}")
            text = "".join(piece.text for piece in value or ())
            if pattern and operator.startswith("#") and text.startswith(pattern):
                text = text[len(pattern) :]
            elif pattern and operator.startswith("%") and text.endswith(pattern):
                text = text[: -len(pattern)]
            origin = value[0].origin if value else Origin(self.path, self.line)
            return (Piece(text, origin),) if text else ()
        present = non_empty if operator.startswith(":") else is_set
        if operator.endswith("+"):
            return word if present else ()
        if present:
            return value or ()
        if operator.endswith("="):
            self.variables.values[key] = word
            self.variables.assignments.append(Assignment(key, Origin(self.path, self.line), word))
        return word

    def _single_quoted(self, literal: Callable[[str], None]) -> None:
        """'...' at the cursor: every character up to the closing quote is literal text."""
        self._advance()
        while self._peek() != "'":
            if not self._peek():
                raise _Unsupported("an unterminated single quote")
            literal(self._peek())
            self._advance()
        self._advance()

    def _operand(self, quoted: bool) -> Value:
        """The word after an operator, up to the matching ``}``; quotes inside double quotes are not guessed."""
        pieces: list[Piece] = []

        def literal(text: str) -> None:
            _append_literal(pieces, text, Origin(self.path, self.line))

        while (char := self._peek()) != "}":
            if not char:
                raise _Unsupported("an unterminated ${...}")
            if char in ("'", '"'):
                if quoted:
                    # bash and dash differ on quotes inside "${VAR:+...}": never guess
                    raise _Unsupported("a quote inside a quoted ${...}")
                if char == "'":
                    self._single_quoted(literal)
                else:
                    raise _Unsupported("a double quote inside ${...}")
            elif char == "\\":
                nxt = self._peek(1)
                if nxt == "\n":
                    self._advance(2)
                    continue
                if quoted and nxt not in ("$", "`", '"', "\\", "}"):
                    literal("\\")
                    self._advance()
                    continue
                if not nxt:
                    raise _Unsupported("an unterminated ${...}")
                literal(nxt)
                self._advance(2)
            elif char in ("$", "`"):
                pieces.extend(self._expansion(quoted))
            elif char == "{":
                raise _Unsupported("a brace inside ${...}")
            elif not quoted and char.isspace():
                # unquoted, the result would be split into words: the assignment context does not split,
                # but a space in an unquoted operand is rare enough not to guess
                raise _Unsupported("whitespace in an unquoted ${...}")
            else:
                literal(char)
                self._advance()
        self._advance()  # the }
        return tuple(pieces)
