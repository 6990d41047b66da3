"""Stages and build variables as the builder walks a Dockerfile, instruction by instruction.

BuildKit's scoping: ARGs before the first FROM are global and visible to FROM only; a stage sees its
own ARGs (a bare ``ARG NAME`` re-imports the global default) and ENVs, which a child stage
(``FROM build``) inherits; ENV wins over ARG. A build argument without a default has no value we can
know: it is kept as ``${NAME}``, unresolved. The automatic platform arguments (``TARGETARCH``...)
are known to the builder, not to us: unresolved, never empty.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from types import MappingProxyType

from dutyguard.sources.dockerfile._budget import MAX_SCOPE_ENTRIES, Budget
from dutyguard.sources.dockerfile._model import (
    DEFAULT_SHELL,
    PLATFORM_ARGS,
    Instruction,
    Scope,
    Stage,
    Variable,
)


class BuildState:
    """What the instructions read so far have declared: stages, ARGs, ENVs, the SHELL."""

    def __init__(self, budget: Budget, problem: Callable[[int, str, int], None]) -> None:
        self.budget = budget
        self.problem = problem
        self.stages: list[Stage] = []
        self.global_args: dict[str, Variable] = {
            name: Variable("${" + name + "}", False, "arg", declared_only=False) for name in PLATFORM_ARGS
        }
        self.args: dict[str, Variable] = {}
        self.env: dict[str, Variable] = {}
        self.stage_env: list[dict[str, Variable]] = []
        self.stage_shell: list[tuple[str, ...]] = []
        self.shell: tuple[str, ...] = DEFAULT_SHELL
        self.scope: Scope = MappingProxyType(dict(self.global_args))
        self.scope_dirty = False
        self.seen_keys: dict[str, int] = {}

    def current_scope(self) -> Scope:
        """The variables the next instruction sees (shared between instructions until one changes it)."""
        if self.scope_dirty:
            merged = dict(self.global_args) if not self.stages else {**self.args, **self.env}
            self.budget.scope_entries += len(merged)
            if self.budget.scope_entries > MAX_SCOPE_ENTRIES:
                raise self.budget.fail(
                    0, f"more than {MAX_SCOPE_ENTRIES} variable definitions across instructions"
                )
            self.scope = MappingProxyType(merged)
            self.scope_dirty = False
        return self.scope

    def close_stage(self, end: int) -> None:
        """The current stage ends before instruction ``end``."""
        if not self.stages:
            return
        last = self.stages[-1]
        if last.end_index < 0:
            self.stages[-1] = replace(last, end_index=end)
            self.stage_env.append(self.env)
            self.stage_shell.append(self.shell)

    def apply(self, ins: Instruction) -> Instruction:
        """Take in what a top-level instruction declares; return it with its identity key."""
        kw = ins.keyword
        if kw == "FROM":
            self._from(ins)
        elif kw == "ARG":
            target = self.global_args if not self.stages else self.args
            for p in ins.pairs:
                if p.expanded is not None:
                    target[p.key] = Variable(p.expanded, p.resolved, "arg")
                elif self.stages and p.key in self.global_args:
                    g = self.global_args[p.key]
                    target[p.key] = Variable(g.value, g.resolved, "arg", g.declared_only)
                elif p.key in PLATFORM_ARGS:
                    target[p.key] = Variable("${" + p.key + "}", False, "arg")
                else:
                    target[p.key] = Variable("${" + p.key + "}", False, "arg", declared_only=True)
            self.scope_dirty = True
        elif kw == "ENV" and self.stages:
            for p in ins.pairs:
                self.env[p.key] = Variable(p.expanded or "", p.resolved, "env")
            self.scope_dirty = True
        elif kw == "SHELL" and ins.exec_form and ins.words:
            self.shell = ins.words
        return replace(ins, identity_key=self._identity_key(ins))

    def _from(self, ins: Instruction) -> None:
        self.close_stage(ins.index)
        words = ins.words
        image_raw = words[0] if words else ""
        image = ins.expanded[0] if ins.expanded else ""
        name: str | None = None
        if len(words) == 3 and words[1].lower() == "as":
            name = words[2].lower()
        elif len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
            self.problem(ins.start_line, "FROM requires either one or three arguments", ins.index)
        parent = self._stage_named(image.lower()) if image else None
        platform = next((f.expanded for f in ins.flags if f.name == "platform"), None)
        stage = Stage(
            index=len(self.stages),
            name=name,
            image=image,
            image_raw=image_raw,
            resolved=ins.resolved,
            parent=parent,
            platform=platform,
            from_index=ins.index,
            end_index=-1,
        )
        self.stages.append(stage)
        self.args = {}
        self.env = dict(self.stage_env[parent]) if parent is not None else {}
        self.shell = self.stage_shell[parent] if parent is not None else DEFAULT_SHELL
        self.scope_dirty = True

    def _stage_named(self, name: str) -> int | None:
        for st in reversed(self.stages):
            if st.name == name:
                return st.index
        return None

    def _identity_key(self, ins: Instruction) -> str:
        # Stage, normalised text and occurrence: stable when lines are inserted above.
        label = (self.stages[-1].name or f"#{len(self.stages) - 1}") if self.stages else "global"
        h = hashlib.sha256(f"{ins.keyword} {' '.join(ins.text.split()[1:])}".encode("utf-8", "surrogatepass"))
        for doc in ins.heredocs:
            h.update(b"\x00" + " ".join(doc.body.split()).encode("utf-8", "surrogatepass"))
        norm = f"{label}\x00{h.hexdigest()[:32]}"
        n = self.seen_keys.get(norm, 0)
        self.seen_keys[norm] = n + 1
        return f"{norm}\x00{n}"
