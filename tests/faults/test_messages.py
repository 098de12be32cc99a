"""Messages that point to flags: every ``--flag`` a user-facing string names exists on the command it names.

The strings are read from the source (every string literal and f-string of ``edgeformer/``, help texts and
docstrings included), and the commands from the typer app itself, so a flag renamed or a message written
tomorrow is checked too. A flag is attributed to the nearest command named before it in the same clause
(``edgeformer compile X --format``, ``compile its output with --precision``); a flag with no command before it
must exist on some command.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import typer

import edgeformer
from edgeformer.cli.app import app

SOURCE = Path(edgeformer.__file__).parent
# flags of other programs that messages quote (pip install --upgrade, trtexec --onnx, ...): not ours to check
FOREIGN = {"pip", "pip3", "python", "python3", "npm", "npx", "trtexec", "git", "uv", "apt-get", "apt", "conda", "ovc"}
FLAG = re.compile(r"--[a-z][a-z0-9-]*")
# command words that are also common nouns name a command only after `edgeformer` ("add samples, use --method")
NOUNS = {"samples", "doctor", "models", "agent", "fleet", "app", "latency"}


def command_flags() -> dict[tuple[str, ...], set[str]]:
    """Every command path (``("latency", "build")``) and the flags it takes."""
    out: dict[tuple[str, ...], set[str]] = {}

    def walk(cmd, path: tuple[str, ...]) -> None:
        subcommands = getattr(cmd, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, (*path, name))
            return
        out[path] = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")} | {"--help"}

    walk(typer.main.get_command(app), ())
    return out


def strings(tree: ast.AST):
    """(line, text) of every string literal; an f-string's expressions read as ``{}``."""
    parts = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in parts:
            text = node.value
        else:
            continue
        if not re.fullmatch(r"--[\w-]+(=.*)?", text):  # an argv element of a subprocess, not a message
            yield node.lineno, text


def mentions(text: str, commands: set[tuple[str, ...]]):
    """(command path or None, flag) for every flag in ``text``, attributed as the module docstring says."""
    words = {w for path in commands for w in path}
    for clause in re.split(r";|\. |\n|\||\)", text):
        tokens = re.findall(r"[A-Za-z_][\w.-]*|--[a-z][\w-]*(?:=\S*)?", clause)
        current: tuple[str, ...] | None = None
        foreign = False
        for i, tok in enumerate(tokens):
            if tok in FOREIGN:
                current, foreign = None, True
            elif tok.startswith("--"):
                if not foreign and "_" not in tok.partition("=")[0]:  # ours use hyphens; --include_ops_by_config
                    yield current, FLAG.match(tok).group(0)
            elif tok in words:
                two = tuple(tokens[i - 1 : i + 1]) if i else ()
                if two in commands:  # `latency build`, `models info`: the group word came just before
                    current, foreign = two, False
                elif (tok,) in commands and (tok not in NOUNS or (i and tokens[i - 1] == "edgeformer")):
                    current, foreign = (tok,), False


def test_every_flag_a_message_names_exists_on_that_command():
    flags = command_flags()
    every_flag = set().union(*flags.values())
    wrong = []
    for file in sorted(SOURCE.rglob("*.py")):
        for line, text in strings(ast.parse(file.read_text(encoding="utf-8"))):
            for path, flag in mentions(text, set(flags)):
                known = flags[path] if path is not None else every_flag
                if flag not in known:
                    where = f"`edgeformer {' '.join(path)}`" if path else "any command"
                    wrong.append(f"{file.relative_to(SOURCE.parent)}:{line}: {flag} is not an option of {where}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_catches_a_flag_on_the_wrong_command():
    # the CoreML warning once said `compile --checkpoint`: export takes --checkpoint, compile does not
    flags = command_flags()
    found = list(mentions("export and compile with --checkpoint to keep trained weights", set(flags)))
    assert found == [(("compile",), "--checkpoint")]
    assert "--checkpoint" not in flags[("compile",)] and "--checkpoint" in flags[("export",)]
    assert list(mentions("edgeformer latency build m --out x.json", set(flags))) == [(("latency", "build"), "--out")]
    assert list(mentions("pip install --upgrade onnx", set(flags))) == []
    assert list(mentions("add samples, use --method minmax", set(flags))) == [(None, "--method")]
