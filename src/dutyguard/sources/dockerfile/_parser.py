"""From logical lines to instructions: keywords, flags, arguments as BuildKit splits each kind.

Problems BuildKit refuses to build (an unknown instruction, an instruction before the first FROM
other than ARG, no FROM at all, malformed ENV or JSON) are recorded on the resource instead of
aborting: the rest of the file is still checked, and a rule reports each problem, so nothing passes
silently. Limits, binary data and invalid UTF-8 are errors (:class:`InputError`) naming the file.
ENV and LABEL values are expanded against the variables before the instruction; ARG defaults also
see the ARGs declared before them in the same instruction. Nothing is run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from types import MappingProxyType

from dutyguard.errors import InputError, LimitExceeded
from dutyguard.limits import Limits
from dutyguard.sources.dockerfile._budget import Budget
from dutyguard.sources.dockerfile._lexer import (
    HEREDOC_WORD,
    WS,
    Expander,
    extract_flags,
    maybe_json,
    split_words,
    unquote_key,
)
from dutyguard.sources.dockerfile._lines import LineReader, LogicalLine
from dutyguard.sources.dockerfile._model import (
    EMPTY_SCOPE,
    KNOWN_INSTRUCTIONS,
    Dockerfile,
    Flag,
    Heredoc,
    Instruction,
    KeyValue,
    ParseProblem,
    Scope,
    ShellCommand,
    Variable,
)
from dutyguard.sources.dockerfile._scope import BuildState
from dutyguard.sources.dockerfile._shell import read_shell
from dutyguard.sources.interface import InputFile

_MAX_PROBLEMS = 1000


def parse_dockerfile(f: InputFile, limits: Limits) -> Dockerfile:
    """Parse one Dockerfile; raises :class:`InputError` (naming the file and line) when it cannot."""
    f.check_size(limits.max_file_bytes, "Dockerfiles")
    nul = f.data.find(b"\x00")
    if nul >= 0:
        raise InputError(f.name, f"binary data (NUL byte at offset {nul}), not a Dockerfile")
    text = f.text()
    try:
        return _Parser(f.name, text, limits).parse()
    except RecursionError:
        raise LimitExceeded(f.name, "nesting too deep") from None


class _Parser:
    def __init__(self, name: str, text: str, limits: Limits) -> None:
        self.name = name
        self.budget = Budget(name, limits)
        self.problems: list[ParseProblem] = []
        self.reader = LineReader(name, text, limits, self.budget, self.problem)
        self.state = BuildState(self.budget, self.problem)
        self.instructions: list[Instruction] = []
        self.escape = "\\"

    def problem(self, line: int, message: str, index: int = -1) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(ParseProblem(line, message, index))

    def parse(self) -> Dockerfile:
        reader, state = self.reader, self.state
        first = reader.directives()
        self.escape = reader.escape
        for line in reader.logical_lines(first):
            self.instructions.append(self._build(line, len(self.instructions), top=True))
        if not state.stages:
            self.problem(1, "no FROM instruction")
        state.close_stage(len(self.instructions))
        return Dockerfile(
            file=self.name,
            instructions=tuple(self.instructions),
            stages=tuple(state.stages),
            problems=tuple(self.problems),
            escape=self.escape,
            syntax=reader.syntax,
            syntax_line=reader.syntax_line,
            global_args=MappingProxyType(dict(state.global_args)),
        )

    def _build(self, line: LogicalLine, index: int, *, top: bool, base: int = 0) -> Instruction:
        """The instruction on ``line`` (from offset ``base``: an ONBUILD's trigger is built the same way)."""
        text, start, heredocs = line.text, line.start, line.heredocs
        m = re.match(r"\s*(\S+)", text[base:])
        keyword_raw = m.group(1) if m else ""
        keyword = keyword_raw.upper()
        after = base + (m.end() if m else 0)
        raw_flags, args_pos = extract_flags(text, after)
        args = text[args_pos:].strip()
        while args_pos < len(text) and text[args_pos].isspace():
            args_pos += 1
        known = keyword in KNOWN_INSTRUCTIONS
        if not known:
            self.problem(start, f"unknown instruction: {keyword_raw}", index)
        elif top and keyword not in ("FROM", "ARG") and not self.state.stages:
            self.problem(start, f"{keyword} before the first FROM (only ARG may come first)", index)

        state = self.state
        scope = state.current_scope() if top else EMPTY_SCOPE
        from_scope: Scope = MappingProxyType(state.global_args) if keyword == "FROM" else scope
        flags = tuple(self._flag(w, from_scope, start) for w, _ in raw_flags)

        exec_form = False
        words: tuple[str, ...] = ()
        expanded: tuple[str, ...] = ()
        resolved = True
        pairs: tuple[KeyValue, ...] = ()
        commands: tuple[ShellCommand, ...] = ()
        sub: Instruction | None = None

        if keyword == "FROM":
            words = tuple(w for w in WS.split(args) if w)
            exp = Expander(from_scope, self.escape, self.budget, start)
            expanded = tuple(exp.word(w) for w in words[:1]) + words[1:]
            resolved = exp.resolved
        elif keyword in ("ARG", "ENV", "LABEL"):
            pairs = self._pairs(keyword, args, args_pos, scope, start, index)
            words = tuple(p.key if p.value is None else f"{p.key}={p.value}" for p in pairs)
            expanded = tuple(p.key if p.expanded is None else f"{p.key}={p.expanded}" for p in pairs)
            resolved = all(p.resolved for p in pairs)
        elif keyword in ("RUN", "CMD", "ENTRYPOINT", "SHELL"):
            elements, bad = maybe_json(args)
            if bad:
                self.problem(start, bad, index)
            exec_form = elements is not None
            words = elements if elements is not None else (args,)
            expanded = words
            if keyword == "SHELL" and not exec_form:
                self.problem(start, "SHELL requires the arguments to be in JSON form", index)
            if keyword != "SHELL" and (args or exec_form):
                commands = self._commands(text, args_pos, elements, heredocs, scope, start)
        elif keyword == "HEALTHCHECK":
            hm = re.match(r"(\S+)\s*", args)
            kind = hm.group(1).upper() if hm else ""
            rest_pos = args_pos + (hm.end() if hm else 0)
            rest = text[rest_pos:].strip()
            if kind == "CMD":
                elements, bad = maybe_json(rest)
                if bad:
                    self.problem(start, bad, index)
                exec_form = elements is not None
                words = ("CMD", *(elements if elements is not None else (rest,)))
                commands = self._commands(text, rest_pos, elements, (), scope, start)
            else:
                words = (kind,) if kind else ()
                if kind != "NONE":
                    self.problem(start, "HEALTHCHECK needs CMD or NONE", index)
            expanded = words
        elif keyword in ("COPY", "ADD", "VOLUME"):
            elements, bad = maybe_json(args)
            if bad:
                self.problem(start, bad, index)
            exec_form = elements is not None
            words = elements if elements is not None else tuple(w for w in WS.split(args) if w)
            exp = Expander(scope, self.escape, self.budget, start)
            expanded = tuple(w if HEREDOC_WORD.match(w) else exp.word(w) for w in words)
            resolved = exp.resolved
        elif keyword == "EXPOSE":
            words = tuple(w for w in WS.split(args) if w)
            exp = Expander(scope, self.escape, self.budget, start)
            expanded = tuple(exp.word(w) for w in words)
            resolved = exp.resolved
        elif keyword in ("USER", "WORKDIR", "STOPSIGNAL"):
            words = (args,) if args else ()
            exp = Expander(scope, self.escape, self.budget, start)
            expanded = tuple(exp.word(w) for w in words)
            resolved = exp.resolved
        elif keyword == "MAINTAINER":
            words = expanded = (args,) if args else ()
        elif keyword == "ONBUILD":
            words = expanded = (args,) if args else ()
            if args:
                inner_kw = args.split(None, 1)[0].upper()
                if inner_kw in ("ONBUILD", "FROM", "MAINTAINER"):
                    self.problem(start, f"{inner_kw} isn't allowed as an ONBUILD trigger", index)
                sub = self._build(line, index, top=False, base=args_pos)

        ins = Instruction(
            index=index,
            keyword=keyword,
            text=text,
            original=line.original,
            start_line=start,
            end_line=line.end,
            stage=len(state.stages) - 1 if keyword != "FROM" else len(state.stages),
            flags=flags,
            args=args,
            args_offset=args_pos,
            exec_form=exec_form,
            words=words,
            expanded=expanded,
            resolved=resolved,
            pairs=pairs,
            heredocs=heredocs,
            commands=commands,
            scope=scope if keyword != "FROM" else MappingProxyType(dict(state.global_args)),
            segments=line.segments,
            known=known,
            sub=sub,
        )
        return state.apply(ins) if top else ins

    def _flag(self, word: str, scope: Scope, line: int) -> Flag:
        name, sep, value = word[2:].partition("=")
        if not sep:
            return Flag(name, None, None)
        exp = Expander(scope, self.escape, self.budget, line, quotes=False)
        expanded = exp.word(value)
        return Flag(name, value, expanded, exp.resolved)

    def _commands(
        self,
        text: str,
        pos: int,
        elements: tuple[str, ...] | None,
        heredocs: Sequence[Heredoc],
        scope: Scope,
        line: int,
    ) -> tuple[ShellCommand, ...]:
        script_heredoc = -1
        if elements is None and heredocs:
            words = split_words(text[pos:], "\\")
            if len(words) == 1 and HEREDOC_WORD.match(words[0][0]):
                script_heredoc = 0
        return read_shell(
            text,
            pos,
            scope=scope,
            heredocs=heredocs,
            script_heredoc=script_heredoc,
            exec_words=elements,
            line=line,
            budget=self.budget,
        )

    def _pairs(
        self, keyword: str, args: str, args_pos: int, scope: Scope, line: int, index: int
    ) -> tuple[KeyValue, ...]:
        words = split_words(args, self.escape)
        if not words:
            self.problem(line, f"{keyword} requires at least one argument", index)
            return ()
        out: list[KeyValue] = []
        if keyword == "ARG":
            # ARG defaults see the ARGs declared before them in the same instruction.
            local = dict(scope)
            for w, off in words:
                key, sep, raw = w.partition("=")
                if not sep:
                    out.append(KeyValue(key, None, None, True, args_pos + off))
                    continue
                exp = Expander(local, self.escape, self.budget, line)
                value = exp.word(raw)
                local[key] = Variable(value, exp.resolved, "arg")
                out.append(KeyValue(key, raw, value, exp.resolved, args_pos + off))
            return tuple(out)
        if "=" not in words[0][0]:
            # the legacy form: "ENV NAME the rest of the line"
            parts = WS.split(args, maxsplit=1)
            if len(parts) < 2:
                self.problem(line, f"{keyword} must have two arguments", index)
                return ()
            exp = Expander(scope, self.escape, self.budget, line)
            value = exp.word(parts[1])
            return (KeyValue(parts[0], parts[1], value, exp.resolved, args_pos),)
        for w, off in words:
            key, sep, raw = w.partition("=")
            if not sep:
                self.problem(line, f"can't find = in {w!r}; must be of the form name=value", index)
                continue
            # Every value of one ENV sees the variables as they were before the instruction.
            exp = Expander(scope, self.escape, self.budget, line)
            value = exp.word(raw)
            out.append(KeyValue(unquote_key(key), raw, value, exp.resolved, args_pos + off))
        return tuple(out)
