"""What a command line really runs: wrappers peeled off, and the scripts a shell is handed.

``sudo -u app env X=1 nohup python3 -m pip install x`` runs ``pip``; ``sh -c 'script'``,
``su -c 'script'`` and a heredoc fed to a shell's stdin run a script the shell reader then reads
too. Aliases, functions and ``eval`` strings are not followed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from dutyguard.sources.dockerfile._model import SHELLS, Invocation, ShellWord

_WRAPPER_VALUE_OPTS: Mapping[str, frozenset[str]] = {
    "sudo": frozenset({"-u", "-g", "-p", "-C", "-U", "-r", "-t", "-T", "-D", "-h", "--user", "--group"}),
    "doas": frozenset({"-u", "-C"}),
    "env": frozenset({"-u", "-C", "--unset", "--chdir", "-S", "--split-string"}),
    "nice": frozenset({"-n", "--adjustment"}),
    "ionice": frozenset({"-c", "-n", "-p", "--class", "--classdata"}),
    "stdbuf": frozenset({"-i", "-o", "-e"}),
    "timeout": frozenset({"-s", "-k", "--signal", "--kill-after"}),
    "xargs": frozenset({"-I", "-n", "-P", "-d", "-E", "-L", "-s", "-a", "--max-args", "--delimiter"}),
    "exec": frozenset({"-a"}),
    "nohup": frozenset(),
    "command": frozenset(),
    "builtin": frozenset(),
    "time": frozenset({"-f", "-o"}),
    "unbuffer": frozenset(),
    "setsid": frozenset(),
    "tini": frozenset(),
    "dumb-init": frozenset(),
}
_WRAPPER_POSITIONALS = {"timeout": 1, "chroot": 1, "gosu": 1, "su-exec": 1, "chpst": 0}
"""Wrappers that take fixed positional arguments before the command (``timeout 10 cmd``)."""
_PYTHON = re.compile(r"python[0-9.]*$")


def _basename(word: str) -> str:
    return word.rsplit("/", 1)[-1]


def unwrap(words: Sequence[ShellWord], assignments: Sequence[ShellWord] = ()) -> Invocation:
    """Peel ``sudo``, ``env``, ``nohup``, ``xargs``... and ``busybox``/``python -m`` off a command line."""
    wrappers: list[str] = []
    env: list[ShellWord] = list(assignments)
    i = 0
    n = len(words)
    for _ in range(16):  # wrappers of wrappers, bounded
        if i >= n:
            break
        prog = _basename(words[i].expanded)
        if prog == "busybox" and i + 1 < n:
            wrappers.append(prog)
            i += 1
            continue
        if prog in _WRAPPER_VALUE_OPTS or prog in _WRAPPER_POSITIONALS:
            wrappers.append(prog)
            i += 1
            value_opts = _WRAPPER_VALUE_OPTS.get(prog, frozenset())
            while i < n:
                w = words[i].expanded
                if w == "--":
                    i += 1
                    break
                if prog == "env" and "=" in w and not w.startswith("-"):
                    env.append(words[i])
                    i += 1
                    continue
                if not w.startswith("-") or w == "-":
                    break
                i += 2 if w in value_opts else 1
            for _ in range(_WRAPPER_POSITIONALS.get(prog, 0)):
                if i < n:
                    i += 1
            continue
        break
    if i >= n:
        return Invocation("", (), tuple(wrappers), tuple(env))
    program = _basename(words[i].expanded)
    args = tuple(words[i + 1 :])
    if _PYTHON.match(program) and len(args) >= 2 and args[0].expanded == "-m":
        wrappers.append(program)
        program, args = _basename(args[1].expanded), args[2:]
    return Invocation(program, args, tuple(wrappers), tuple(env), tuple(w.expanded for w in args))


def shell_c_script(inv: Invocation) -> ShellWord | None:
    """The command string of ``sh -c '...'`` / ``su -c '...'`` / ``runuser -c``, if any."""
    args = inv.args
    if inv.program in ("su", "runuser"):
        for k, w in enumerate(args[:-1]):
            if w.expanded in ("-c", "--command"):
                return args[k + 1]
            if w.expanded.startswith("--command="):
                return ShellWord(w.value[10:], w.expanded[10:], w.raw, w.offset, w.quoted)
        return None
    if inv.program not in SHELLS:
        return None
    has_c = False
    skip = False
    for w in args:
        e = w.expanded
        if skip:
            skip = False
            continue
        if e in ("-o", "+o", "-O", "+O", "--rcfile", "--init-file"):
            skip = True
            continue
        if e.startswith("--"):
            continue
        if e.startswith("-") and len(e) > 1:
            if "c" in e[1:]:
                has_c = True
            continue
        if e.startswith("+"):
            continue
        return w if has_c else None
    return None


def is_shell_reading_stdin(inv: Invocation) -> bool:
    if inv.program not in SHELLS:
        return False
    return all(not (w.expanded.startswith("-") and "c" in w.expanded[1:]) for w in inv.args[:4])


def shebang_is_shell(body: str) -> bool:
    if not body.startswith("#!"):
        return True
    first = body.split("\n", 1)[0][2:].strip().split()
    if not first:
        return True
    prog = _basename(first[0])
    if prog == "env" and len(first) > 1:
        prog = _basename(first[1])
    return prog in SHELLS
