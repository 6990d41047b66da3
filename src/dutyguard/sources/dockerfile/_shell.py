"""A small POSIX shell reader: the shell text of RUN, CMD, ENTRYPOINT and HEALTHCHECK as simple commands.

It reads quotes, escapes, ``&& || ; | &``, newlines, subshells, ``$(...)``, backticks, process
substitution, ``if/for/while/case`` keywords, assignments, redirections, ``sh -c`` / ``su -c``
strings, and heredoc bodies that a shell executes. Rules match commands, not substrings, so
``echo "sudo"`` is not ``sudo``. It is a reader, not an interpreter: it never executes and never
fails on odd syntax; aliases, functions and ``eval`` strings are not followed. A SHELL other than a
POSIX shell is still read this way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from dutyguard.limits import Limits
from dutyguard.sources.dockerfile._budget import MAX_NESTING, Budget
from dutyguard.sources.dockerfile._commands import (
    is_shell_reading_stdin,
    shebang_is_shell,
    shell_c_script,
    unwrap,
)
from dutyguard.sources.dockerfile._model import (
    EMPTY_SCOPE,
    Heredoc,
    Invocation,
    Scope,
    ShellCommand,
    ShellWord,
)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATOR_TEXT = ";;& &>> <<< <<- && || ;; ;& |& &> >> << <> >& <& >| | & ; < > ( )"
_OPERATORS = tuple(sorted(_OPERATOR_TEXT.split(" "), key=len, reverse=True))
"""Longest first, so that ``&&`` is not read as two ``&``."""
_OPS_BY_CHAR = {c: tuple(op for op in _OPERATORS if op[0] == c) for c in ";&|<>()"}
_OP_CHARS = frozenset(";&|<>()")
_SEPARATORS = frozenset({"&&", "||", ";", ";;", ";&", ";;&", "&", "|", "|&"})
_OUTPUT_REDIRECTS = frozenset({">", ">>", "&>", "&>>", ">|", "<>"})
_SKIP_KEYWORDS = frozenset(
    {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}", "time", "coproc"}
)
_PLAIN = re.compile(r"[^\s;&|<>()\\'\"$`]+")
_WORD_END = frozenset(" \t\n\r\f\v;&|<>()")
_FD_PREFIX = re.compile(r"\d+(?=[<>])")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])?\+?=")
_SPECIAL_PARAMS = frozenset("@*#?$!-0123456789")


@dataclass(slots=True)
class _Cmd:
    words: list[ShellWord]
    assigns: list[ShellWord]
    offset: int
    source: int
    pipeline: int
    position: int
    connector: str
    seq: int
    parent: _Cmd | None = None
    nesting: str = ""
    stdin_heredoc: int = -1
    outputs: list[str] = field(default_factory=list)
    inv: Invocation | None = None


@dataclass(slots=True)
class _Ctx:
    text: str
    end: int
    source: int
    multiline: bool
    override: int | None
    depth: int


class _ShellReader:
    """Splits shell text into simple commands. Never executes, never fails on odd syntax."""

    def __init__(self, budget: Budget, scope: Scope, line: int, heredoc_names: Sequence[str]) -> None:
        self.budget = budget
        self.scope = scope
        self.line = line
        self.all: list[_Cmd] = []
        self.pipelines = 0
        self.seq = 0
        self.heredoc_names = tuple(heredoc_names)
        self.heredoc_next = 0

    # --- entry points -------------------------------------------------------------------------
    def script(
        self,
        text: str,
        start: int,
        *,
        source: int,
        multiline: bool,
        depth: int = 0,
        override: int | None = None,
        parent: _Cmd | None = None,
        nesting: str = "",
    ) -> None:
        if depth > MAX_NESTING:
            raise self.budget.fail(self.line, f"shell commands nested deeper than {MAX_NESTING}")
        mark = len(self.all)
        cx = _Ctx(text, len(text), source, multiline, override, depth)
        self._list(cx, start, None)
        self._adopt(mark, len(self.all), parent, nesting)

    def argv(self, words: Sequence[str], offset: int, source: int) -> None:
        """An exec-form command (``RUN ["a", "b"]``): one command, no shell involved."""
        sw = [ShellWord(w, w, w, offset, False) for w in words]
        self.pipelines += 1
        self.seq += 1
        self.all.append(_Cmd(sw, [], offset, source, self.pipelines, 0, "", self.seq))

    def finish(self) -> tuple[ShellCommand, ...]:
        # A bare redirection ("done < list", "> file") runs no program: not a command.
        kept = (c for c in self.all if c.words or c.assigns)
        ordered = sorted(kept, key=lambda c: (c.source + 1, c.offset, c.seq))
        index = {id(c): i for i, c in enumerate(ordered)}
        return tuple(
            ShellCommand(
                words=tuple(c.words),
                assignments=tuple(c.assigns),
                offset=c.offset,
                source=c.source,
                pipeline=c.pipeline,
                position=c.position,
                connector=c.connector,
                parent=index.get(id(c.parent), -1),
                nesting=c.nesting,
                stdin_heredoc=c.stdin_heredoc,
                outputs=tuple(c.outputs),
                invocation=c.inv if c.inv is not None else unwrap(c.words, c.assigns),
            )
            for c in ordered
        )

    # --- helpers ------------------------------------------------------------------------------
    def _adopt(self, start: int, end: int, parent: _Cmd | None, nesting: str) -> None:
        if parent is None:
            return
        for c in self.all[start:end]:
            if c.parent is None and c is not parent:
                c.parent = parent
                c.nesting = nesting

    def _off(self, cx: _Ctx, i: int) -> int:
        return cx.override if cx.override is not None else i

    def _list(self, cx: _Ctx, i: int, closer: str | None) -> int:
        """Read commands from ``i`` until ``closer`` (consumed) or the end; return the position after."""
        t, end = cx.text, cx.end
        cmd: _Cmd | None = None
        connector = ""
        last_pipeline, last_position = 0, -1
        heredocs: list[tuple[str, bool]] = []
        subs: list[tuple[str, int, int]] = []
        header = False  # for/select word list: not commands
        case_stack: list[bool] = []  # True while reading a case pattern
        case_header = False
        skip_name = False  # after "function"

        def start_cmd(at: int) -> _Cmd:
            nonlocal last_pipeline, last_position
            if connector in ("|", "|&") and last_position >= 0:
                pipeline, position = last_pipeline, last_position + 1
            else:
                self.pipelines += 1
                pipeline, position = self.pipelines, 0
            last_pipeline, last_position = pipeline, position
            self.seq += 1
            return _Cmd([], [], self._off(cx, at), cx.source, pipeline, position, connector, self.seq)

        def finish() -> None:
            nonlocal cmd
            if cmd is not None:
                for nesting, a, b in subs:
                    self._adopt(a, b, cmd, nesting)
                self.all.append(cmd)
                cmd = None
            subs.clear()

        budget = self.budget
        while i < end:
            budget.ticks += 1
            if not budget.ticks & 0xFFF:
                budget.clock(self.line)
            c = t[i]
            if c in " \t\r\f\v":
                i += 1
                continue
            if c == "\\" and i + 1 < end and t[i + 1] == "\n":
                i += 2
                continue
            if c == "\n":
                if cmd is not None or connector not in ("&&", "||", "|", "|&"):
                    finish()
                    connector = "\n"
                header = False
                i += 1
                if heredocs and cx.multiline:
                    i = self._skip_bodies(t, i, end, heredocs)
                    heredocs.clear()
                continue
            if c == "#" and (i == 0 or t[i - 1] in " \t\n;&|()"):
                j = t.find("\n", i, end)
                i = end if j < 0 else j
                continue
            if closer is not None and c == closer and not case_stack:
                finish()
                return i + 1
            if case_stack and case_stack[-1]:
                # inside a case pattern: everything up to ")" is the pattern
                if c == ")":
                    case_stack[-1] = False
                    i += 1
                    continue
                if c in _OP_CHARS:
                    i += 1
                    continue
                word, i = self._word(cx, i, subs)
                if word.value == "esac" and not word.quoted:
                    case_stack.pop()
                continue
            if c in "<>" and i + 1 < end and t[i + 1] == "(":
                if cmd is None:
                    cmd = start_cmd(i)
                word, i = self._word(cx, i, subs)
                cmd.words.append(word)
                continue
            op = self._operator(t, i, end)
            if op is not None:
                if op in _SEPARATORS:
                    finish()
                    connector = op
                    header = False
                    i += len(op)
                    if op in (";;", ";&", ";;&") and case_stack:
                        case_stack[-1] = True
                    continue
                if op == "(":
                    if cmd is not None and cmd.words:
                        j = i + 1
                        while j < end and t[j] in " \t":
                            j += 1
                        if j < end and t[j] == ")":  # name() { ... }: a function definition
                            cmd = None
                            subs.clear()
                            i = j + 1
                            continue
                    finish()
                    if cx.depth + 1 > MAX_NESTING:
                        raise self.budget.fail(self.line, f"subshells nested deeper than {MAX_NESTING}")
                    inner = _Ctx(t, end, cx.source, cx.multiline, cx.override, cx.depth + 1)
                    i = self._list(inner, i + 1, ")")
                    continue
                if op == ")":
                    i += 1
                    continue
                # a redirection: the next word is its target, not an argument
                i += len(op)
                while i < end and t[i] in " \t":
                    i += 1
                if cmd is None:
                    cmd = start_cmd(i)
                if i >= end or t[i] in "\n;&|()":
                    continue
                target, i = self._word(cx, i, subs)
                if op in ("<<", "<<-"):
                    if cx.multiline:
                        heredocs.append((target.value, op == "<<-"))
                    elif self.heredoc_next < len(self.heredoc_names) and (
                        self.heredoc_names[self.heredoc_next] == target.value
                    ):
                        cmd.stdin_heredoc = self.heredoc_next
                        self.heredoc_next += 1
                elif op in _OUTPUT_REDIRECTS:
                    cmd.outputs.append(target.expanded)
                continue
            m = _FD_PREFIX.match(t, i)
            if m is not None:
                i = m.end()
                continue
            at = i
            word, i = self._word(cx, i, subs)
            at_command = cmd is None or (not cmd.words and not cmd.assigns)
            if header:
                continue
            if case_header:
                if word.value == "in" and not word.quoted:
                    case_header = False
                    case_stack.append(True)
                continue
            if skip_name:
                skip_name = False
                continue
            if at_command and not word.quoted:
                if word.value in _SKIP_KEYWORDS or (word.value == "esac" and case_stack):
                    if word.value == "esac" and case_stack:
                        case_stack.pop()
                    continue
                if word.value in ("for", "select"):
                    header = True
                    continue
                if word.value == "case":
                    case_header = True
                    continue
                if word.value == "function":
                    skip_name = True
                    continue
            if cmd is None:
                cmd = start_cmd(at)
            if not cmd.words and _ASSIGNMENT.match(word.raw):
                cmd.assigns.append(word)
            else:
                cmd.words.append(word)
        finish()
        return end

    @staticmethod
    def _operator(t: str, i: int, end: int) -> str | None:
        for op in _OPS_BY_CHAR.get(t[i], ()):
            if t.startswith(op, i) and i + len(op) <= end:
                return op
        return None

    @staticmethod
    def _skip_bodies(t: str, i: int, end: int, heredocs: Sequence[tuple[str, bool]]) -> int:
        for delim, strip_tabs in heredocs:
            while i < end:
                j = t.find("\n", i, end)
                line_end = end if j < 0 else j
                line = t[i:line_end].rstrip("\r")
                i = end if j < 0 else j + 1
                if (line.lstrip("\t") if strip_tabs else line) == delim:
                    break
        return i

    def _lookup(self, name: str) -> str | None:
        var = self.scope.get(name)
        if var is None or not var.resolved or var.declared_only:
            return None
        return var.value

    def _word(self, cx: _Ctx, i: int, subs: list[tuple[str, int, int]]) -> tuple[ShellWord, int]:
        """One shell word from ``i``: quotes removed, substitutions read (and their commands kept)."""
        t, end = cx.text, cx.end
        start = i
        m = _PLAIN.match(t, i, end)
        if m is not None and (m.end() >= end or t[m.end()] in _WORD_END):
            w = m.group(0)  # the common case: no quotes, no expansions
            return ShellWord(w, w, w, self._off(cx, start), False), m.end()
        val: list[str] = []
        exp: list[str] = []
        size = 0
        quoted = False
        subs_before = len(subs)

        def put(v: str, e: str | None = None, /) -> None:
            nonlocal size
            val.append(v)
            e = v if e is None else e
            exp.append(e)
            size += len(e)
            if size > self.budget.limits.max_line_bytes:
                self.budget.value(size, self.line)

        if t[i] in "<>" and i + 1 < end and t[i + 1] == "(":
            kind = t[i : i + 2]
            j = self._substitute(cx, i + 2, ")", kind, subs)
            put(t[i:j])
            i = j
        while i < end:
            c = t[i]
            if c in " \t\n\r\f\v" or c in _OP_CHARS:
                break
            if c == "\\":
                if i + 1 < end:
                    if t[i + 1] != "\n":
                        put(t[i + 1])
                        quoted = True
                    i += 2
                else:
                    i += 1
            elif c == "'":
                j = t.find("'", i + 1, end)
                j = end if j < 0 else j
                put(t[i + 1 : j])
                quoted = True
                i = j + 1
            elif c == '"':
                quoted = True
                i += 1
                while i < end and t[i] != '"':
                    d = t[i]
                    if d == "\\" and i + 1 < end and t[i + 1] in '$`"\\\n':
                        if t[i + 1] != "\n":
                            put(t[i + 1])
                        i += 2
                    elif d == "$":
                        i = self._dollar(cx, i, put, subs)
                    elif d == "`":
                        i = self._backtick(cx, i, put, subs)
                    else:
                        j = i + 1
                        while j < end and t[j] not in '"\\$`':
                            j += 1
                        put(t[i:j])
                        i = j
                i += 1
            elif c == "$":
                if i + 1 < end and t[i + 1] == "'":
                    j = i + 2
                    while j < end and t[j] != "'":
                        j += 2 if t[j] == "\\" else 1
                    put(t[i + 2 : min(j, end)])
                    quoted = True
                    i = j + 1
                else:
                    i = self._dollar(cx, i, put, subs)
            elif c == "`":
                i = self._backtick(cx, i, put, subs)
            else:
                j = i + 1
                while j < end and t[j] not in " \t\n\r\f\v;&|<>()\\'\"$`":
                    j += 1
                put(t[i:j])
                i = j
        value = "".join(val)
        expanded = "".join(exp)
        self.budget.spend(len(expanded), self.line)
        word = ShellWord(value, expanded, t[start:i], self._off(cx, start), quoted, len(subs) > subs_before)
        return word, min(i, end)

    def _substitute(self, cx: _Ctx, i: int, closer: str, kind: str, subs: list[tuple[str, int, int]]) -> int:
        if cx.depth + 1 > MAX_NESTING:
            raise self.budget.fail(self.line, f"command substitutions nested deeper than {MAX_NESTING}")
        mark = len(self.all)
        inner = _Ctx(cx.text, cx.end, cx.source, cx.multiline, cx.override, cx.depth + 1)
        j = self._list(inner, i, closer)
        subs.append((kind, mark, len(self.all)))
        return j

    def _dollar(self, cx: _Ctx, i: int, put: _Put, subs: list[tuple[str, int, int]]) -> int:
        t, end = cx.text, cx.end
        if i + 1 >= end:
            put("$")
            return i + 1
        c = t[i + 1]
        if t.startswith("$((", i):
            j, level = i + 3, 2
            while j < end and level > 0:
                if t[j] == "(":
                    level += 1
                elif t[j] == ")":
                    level -= 1
                j += 1
            put(t[i:j])
            return j
        if c == "(":
            j = self._substitute(cx, i + 2, ")", "$(", subs)
            put(t[i:j])
            return j
        if c == "{":
            j, level = i + 2, 1
            while j < end and level > 0:
                if t[j] == "{":
                    level += 1
                elif t[j] == "}":
                    level -= 1
                j += 1
            raw = t[i:j]
            inner = raw[2:-1]
            known = self._lookup(inner) if _NAME.fullmatch(inner) else None
            put(raw, known)
            return j
        m = _NAME.match(t, i + 1)
        if m is not None:
            raw = t[i : m.end()]
            put(raw, self._lookup(m.group(0)))
            return m.end()
        if c in _SPECIAL_PARAMS:
            put(t[i : i + 2])
            return i + 2
        put("$")
        return i + 1

    def _backtick(self, cx: _Ctx, i: int, put: _Put, subs: list[tuple[str, int, int]]) -> int:
        t, end = cx.text, cx.end
        j = i + 1
        while j < end and t[j] != "`":
            j += 2 if t[j] == "\\" else 1
        j = min(j, end)
        inner = re.sub(r"\\([`$\\])", r"\1", t[i + 1 : j])
        if cx.depth + 1 > MAX_NESTING:
            raise self.budget.fail(self.line, f"command substitutions nested deeper than {MAX_NESTING}")
        mark = len(self.all)
        sub_cx = _Ctx(inner, len(inner), cx.source, cx.multiline, self._off(cx, i), cx.depth + 1)
        self._list(sub_cx, 0, None)
        subs.append(("`", mark, len(self.all)))
        put(t[i : j + 1])
        return j + 1


class _Put(Protocol):
    """The shell reader's ``put(value, expanded)`` callback (``expanded`` None: same as value)."""

    def __call__(self, value: str, expanded: str | None = None, /) -> None: ...


def read_shell(
    text: str,
    start: int,
    *,
    scope: Scope = EMPTY_SCOPE,
    heredocs: Sequence[Heredoc] = (),
    script_heredoc: int = -1,
    exec_words: Sequence[str] | None = None,
    limits: Limits | None = None,
    name: str = "-",
    line: int = 0,
    budget: Budget | None = None,
) -> tuple[ShellCommand, ...]:
    """The simple commands of a RUN-like instruction (public for tests and for other sources)."""
    b = budget or Budget(name, limits or Limits())
    reader = _ShellReader(b, scope, line, [h.name for h in heredocs])
    if exec_words is not None:
        reader.argv(exec_words, start, -1)
    elif script_heredoc >= 0:
        body = heredocs[script_heredoc].body
        if shebang_is_shell(body):
            reader.script(body, 0, source=script_heredoc, multiline=True)
    else:
        reader.script(text, start, source=-1, multiline=False)
    # Follow what a shell runs: "sh -c 'script'", and heredoc bodies fed to a shell's stdin.
    done = 0
    while done < len(reader.all):
        cmd = reader.all[done]
        done += 1
        if not done & 0xFFF:
            b.clock(line)
        inv = cmd.inv = unwrap(cmd.words, cmd.assigns)
        script = shell_c_script(inv)
        depth = _nesting_depth(cmd)
        if script is not None and not script.substituted:
            # A $(...) in the string was already read as part of the outer command; what the
            # inner shell then runs is its output, which nobody can know before the build.
            reader.script(
                script.value,
                0,
                source=cmd.source,
                multiline=True,
                depth=depth + 1,
                override=script.offset,
                parent=cmd,
                nesting="-c",
            )
        elif 0 <= cmd.stdin_heredoc < len(heredocs) and is_shell_reading_stdin(inv):
            reader.script(
                heredocs[cmd.stdin_heredoc].body,
                0,
                source=cmd.stdin_heredoc,
                multiline=True,
                depth=depth + 1,
                parent=cmd,
                nesting="<<",
            )
    return reader.finish()


def _nesting_depth(cmd: _Cmd) -> int:
    depth = 0
    cur = cmd.parent
    while cur is not None and depth <= MAX_NESTING:
        depth += 1
        cur = cur.parent
    return depth
