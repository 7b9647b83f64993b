"""The GRUB defaults evaluator against the real shells, on generated grub-default-like files.

grub-mkconfig sources /etc/default/grub and then /etc/default/grub.d/*.cfg in ``/bin/sh`` (dash on Debian,
bash on Fedora). Hypothesis writes files of assignments with the POSIX parameter operators, quotes,
backslashes, ``export``, comments and continuation lines, splits them into a default file and drop-ins, and
the evaluator must give what bash and dash give for GRUB_CMDLINE_LINUX and GRUB_CMDLINE_LINUX_DEFAULT.
The shells run only these generated files, with an empty environment.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.host.shellvars import ShellVariables
from harness.hypothesis_profiles import register_profiles

register_profiles()

KEYS = ("GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT")
NAMES = (*KEYS, "A", "UNSET")
SHELLS = [shell for shell in ("bash", "dash") if shutil.which(shell)]
# Plain characters safe in every context below (no quote, $, backslash, brace, glob or blank).
_plain = st.text(alphabet="abz019=._,-:/", min_size=0, max_size=6)
_name = st.sampled_from(NAMES)
_operator = st.sampled_from((":-", "-", ":=", "=", ":+", "+", "#", "##", "%", "%%"))


@st.composite
def _operand(draw: st.DrawFn, quoted: bool) -> str:
    """The word after an operator: text and references; in double quotes blanks too, unquoted '...'."""
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(
            st.sampled_from(("plain", "ref", "blank", "single") if not quoted else ("plain", "ref", "blank"))
        )
        if kind == "plain":
            parts.append(draw(_plain))
        elif kind == "ref":
            parts.append(f"${draw(_name)}")
        elif kind == "blank":
            parts.append(" " if quoted else "'x y'")
        else:
            parts.append(f"'{draw(_plain)} {draw(_plain)}'")
    return "".join(parts)


@st.composite
def _expansion(draw: st.DrawFn, quoted: bool) -> str:
    name = draw(_name)
    form = draw(st.sampled_from(("plain", "braced", "operator")))
    if form == "plain":
        return f"${name}"
    if form == "braced":
        return f"${{{name}}}"
    operator = draw(_operator)
    if operator[-1] in "#%":
        return f"${{{name}{operator}{draw(_plain)}}}"  # literal patterns only
    # the next character must not extend the name: the operand ends at the brace
    return f"${{{name}{operator}{draw(_operand(quoted))}}}"


@st.composite
def _double_quoted(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(("plain", "blank", "expansion", "escape", "continuation")))
        if kind == "plain":
            parts.append(draw(_plain))
        elif kind == "blank":
            parts.append(draw(st.sampled_from((" ", "  ", "\t"))))
        elif kind == "expansion":
            parts.append(draw(_expansion(quoted=True)))
        elif kind == "escape":
            parts.append(draw(st.sampled_from(("\\$", '\\"', "\\\\", "\\a", "'"))))
        else:
            parts.append("\\\n")
    return '"' + "".join(parts) + '"'


@st.composite
def _word(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(("plain", "single", "double", "expansion", "escape")))
        if kind == "plain":
            parts.append(draw(_plain))
        elif kind == "single":
            parts.append(f"'{draw(_plain)} \\ \"{draw(_plain)}'")
        elif kind == "double":
            parts.append(draw(_double_quoted()))
        elif kind == "expansion":
            parts.append(draw(_expansion(quoted=False)))
        else:
            parts.append(draw(st.sampled_from(("\\ ", "\\$", "\\'", '\\"'))))
    return "".join(parts)


@st.composite
def _line(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(("assign", "assign", "assign", "two", "two", "export", "comment", "blank")))
    if kind == "comment":
        return f"# {draw(_plain)} $GRUB_CMDLINE_LINUX 'x"
    if kind == "blank":
        return draw(st.sampled_from(("", "  ", "\t")))
    assignment = f"{draw(_name.filter(lambda n: n != 'UNSET'))}={draw(_word())}"
    if kind == "two" or (kind == "export" and draw(st.booleans())):
        separator = draw(st.sampled_from((" ", " \\\n") if kind == "export" else (" ", "; ", " \\\n")))
        assignment += f"{separator}{draw(_name)}={draw(_word())}"
    if kind == "export":
        assignment = f"export {assignment}"
    return assignment + draw(st.sampled_from(("", "  # trailing", ";")))


_files = st.lists(
    st.lists(_line(), min_size=1, max_size=6).map(lambda lines: "\n".join(lines) + "\n"),
    min_size=1,
    max_size=3,
)


def _shell(shell: str, paths: list[Path]) -> dict[str, str | None]:
    sources = "; ".join(f". '{path}'" for path in paths)
    printing = "; ".join(
        f'if [ "${{{key}+set}}" ]; then printf "%s\\0" "${key}"; else printf "<unset>\\0"; fi' for key in KEYS
    )
    done = subprocess.run(
        [shell, "-c", f"set -a; {sources}; {printing}"],
        capture_output=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=10,
        check=False,
    )
    assert done.returncode == 0, f"{shell} refused a generated file: {done.stderr!r}"
    found = done.stdout.decode().split("\0")[: len(KEYS)]
    return {key: None if text == "<unset>" else text for key, text in zip(KEYS, found, strict=True)}


@pytest.mark.skipif(not SHELLS, reason="neither bash nor dash is installed")
@given(files=_files)
def test_evaluator_agrees_with_bash_and_dash(
    tmp_path_factory: pytest.TempPathFactory, files: list[str]
) -> None:
    directory = tmp_path_factory.mktemp("grub")
    paths = [directory / "grub", *(directory / f"{n:02d}-drop-in.cfg" for n in range(1, len(files)))]
    variables = ShellVariables()
    for path, text in zip(paths, files, strict=True):
        path.write_text(text)
        variables.source(str(path), text)
    assert not variables.unevaluated, (
        f"the evaluator gave up on a supported construct: {variables.unevaluated}"
    )
    ours = {key: (variables.text(key) if key in variables.values else None) for key in KEYS}
    for shell in SHELLS:
        theirs = _shell(shell, paths)
        assert ours == theirs, f"expected what {shell} gives, {theirs!r}; found {ours!r}; files: {files!r}"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # the case: appending to an earlier value through ${VAR:+...}
        (
            [
                'GRUB_CMDLINE_LINUX="quiet"\n',
                'GRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX:+$GRUB_CMDLINE_LINUX }intel_iommu=on"\n',
            ],
            "quiet intel_iommu=on",
        ),
        (
            ['GRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX:+$GRUB_CMDLINE_LINUX }intel_iommu=on"\n'],
            "intel_iommu=on",
        ),
        (['GRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX:-iommu=pt}"\n'], "iommu=pt"),
        (['A=\nGRUB_CMDLINE_LINUX="${A-x}${A:-y}${B+z}${A+w}"\n'], "yw"),
        (['GRUB_CMDLINE_LINUX="${A:=amd_iommu=on} $A"\n'], "amd_iommu=on amd_iommu=on"),
        (['A="a iommu=pt"\nGRUB_CMDLINE_LINUX="${A#a }"\n'], "iommu=pt"),
        # assignments on one line run left to right; export expands all its arguments first
        (["A=old; A=new GRUB_CMDLINE_LINUX=$A\n"], "new"),
        (["A=old; export A=new GRUB_CMDLINE_LINUX=$A\n"], "old"),
    ],
)
def test_parameter_operators(files: list[str], expected: str) -> None:
    variables = ShellVariables()
    for number, text in enumerate(files):
        variables.source(f"/f{number}", text)
    assert not variables.unevaluated, variables.unevaluated
    assert variables.text("GRUB_CMDLINE_LINUX") == expected
