"""The Dockerfile source: BuildKit's reading of lines, heredocs, stages, substitution and shell text,
and refusal of hostile input (each refusal names the file, and the line where there is one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dutyguard.core.evaluate import evaluate
from dutyguard.core.policy import Policy
from dutyguard.errors import InputError, LimitExceeded
from dutyguard.limits import DEFAULT_LIMITS, Limits
from dutyguard.rules import default_registry
from dutyguard.sources.dockerfile import (
    Dockerfile,
    DockerfileSource,
    Instruction,
    is_dockerfile_name,
    parse_dockerfile,
    read_shell,
)
from dutyguard.sources.interface import InputFile
from tests.conftest import make_scanner


def parse(text: str, name: str = "Dockerfile", limits: Limits = DEFAULT_LIMITS) -> Dockerfile:
    return parse_dockerfile(InputFile(name, text.encode()), limits)


def parse_bytes(data: bytes, name: str = "svc/Dockerfile", limits: Limits = DEFAULT_LIMITS) -> Dockerfile:
    return parse_dockerfile(InputFile(name, data, len(data)), limits)


def programs(ins: Instruction) -> list[str]:
    return [c.invocation.program for c in ins.commands]


def only(df: Dockerfile, keyword: str) -> Instruction:
    found = [i for i in df.instructions if i.keyword == keyword]
    assert len(found) == 1, found
    return found[0]


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Dockerfile",
        "dockerfile",
        "Containerfile",
        "a/b/Dockerfile.prod",
        "api.Dockerfile",
        "api.dockerfile",
        "x.containerfile",
        "Containerfile.dev",
    ],
)
def test_dockerfile_names_are_accepted(name: str) -> None:
    assert is_dockerfile_name(name)
    assert DockerfileSource().accepts(name)


@pytest.mark.parametrize(
    "name",
    [
        "Dockerfile.dockerignore",
        "Dockerfile.md",
        "Dockerfile.yaml",
        "mydockerfile",
        "Dockerfiles/x",
        "README",
    ],
)
def test_other_names_are_not_dockerfiles(name: str) -> None:
    assert not is_dockerfile_name(name)


# --- lines ---------------------------------------------------------------------------------------


def test_continuations_drop_comment_and_blank_lines_and_keep_physical_lines() -> None:
    df = parse(
        "FROM alpine:3.20\n"
        "RUN apk add curl \\\n"
        "    # a comment inside the continuation\n"
        "\n"
        "    && sudo ls \\\n"
        "    && echo done\n"
        "USER app\n"
    )
    run = only(df, "RUN")
    assert run.text == "RUN apk add curl     && sudo ls     && echo done"
    assert (run.start_line, run.end_line) == (2, 6)
    assert programs(run) == ["apk", "ls", "echo"]
    sudo_cmd = run.commands[1]
    assert sudo_cmd.invocation.wrappers == ("sudo",)
    assert run.line_at(sudo_cmd.offset) == 5  # the physical line, not the instruction's first
    assert only(df, "USER").start_line == 7


def test_an_escaped_escape_character_does_not_continue_the_line() -> None:
    df = parse("FROM alpine:3.20\nRUN echo a\\\\\nUSER app\n")
    assert [i.keyword for i in df.instructions] == ["FROM", "RUN", "USER"]


def test_escape_directive_switches_to_backtick() -> None:
    df = parse(
        "# escape=`\n"
        "FROM mcr.microsoft.com/windows/servercore:ltsc2022\n"
        "RUN dir c:\\windows `\n"
        "    && echo done\n"
        "COPY . c:\\app\\\n"
    )
    assert df.escape == "`"
    run = only(df, "RUN")
    assert run.text == "RUN dir c:\\windows     && echo done"
    # with the backtick as escape, a trailing backslash is an ordinary character
    assert only(df, "COPY").words == (".", "c:\\app\\")


def test_directives_count_only_at_the_very_top() -> None:
    df = parse("# a comment\n# escape=`\nFROM alpine:3.20\nRUN echo a \\\n && echo b\n")
    assert df.escape == "\\"
    assert only(df, "RUN").commands[-1].invocation.argv == ("b",)


def test_syntax_directive_is_recorded() -> None:
    df = parse("# syntax=docker/dockerfile:1.7\nFROM alpine:3.20\n")
    assert (df.syntax, df.syntax_line) == ("docker/dockerfile:1.7", 1)


def test_crlf_line_endings() -> None:
    df = parse("FROM alpine:3.20\r\nRUN echo a \\\r\n && echo b\r\nUSER app\r\n")
    assert [i.keyword for i in df.instructions] == ["FROM", "RUN", "USER"]
    assert programs(only(df, "RUN")) == ["echo", "echo"]


def test_shell_comment_after_a_command_is_the_shells() -> None:
    # BuildKit keeps "# sudo rm" in the RUN text; it is /bin/sh that ignores it
    run = only(parse("FROM alpine:3.20\nRUN echo hi # sudo rm -rf /\n"), "RUN")
    assert run.text.endswith("# sudo rm -rf /")
    assert programs(run) == ["echo"]


# --- heredocs ------------------------------------------------------------------------------------


def test_run_heredoc_is_a_script_and_the_next_instruction_follows_it() -> None:
    df = parse(
        "FROM debian:12\nRUN <<EOF\napt-get update\n# comment\napt-get install -y curl\nEOF\nUSER app\n"
    )
    run = only(df, "RUN")
    assert (run.start_line, run.end_line) == (2, 6)
    (doc,) = run.heredocs
    assert doc.body == "apt-get update\n# comment\napt-get install -y curl\n"
    assert (doc.start_line, doc.end_line, doc.expand) == (3, 6, True)
    assert [c.invocation.argv for c in run.commands] == [("update",), ("install", "-y", "curl")]
    assert all(c.source == 0 for c in run.commands)
    assert only(df, "USER").start_line == 7
    # a command in the body is located on its own line
    assert df.locate((run.index, "heredoc", 0, "at", run.commands[1].offset)).line == 5


def test_chomped_and_quoted_heredocs_several_on_one_line() -> None:
    df = parse("FROM alpine:3.20\nCOPY <<-'ONE' /a <<\"TWO\" /b\n\tfirst $X\n\tONE\nsecond\nTWO\n")
    copy = only(df, "COPY")
    one, two = copy.heredocs
    assert (one.name, one.chomp, one.expand, one.body) == ("ONE", True, False, "first $X\n")
    assert (two.name, two.chomp, two.expand, two.body) == ("TWO", False, False, "second\n")
    assert copy.words == ("<<-'ONE'", "/a", '<<"TWO"', "/b")
    assert copy.end_line == 6


def test_heredoc_needs_the_word_right_after_the_angle_brackets() -> None:
    # "<< EOF" is a shell heredoc inside RUN's line, not a Dockerfile heredoc: the body lines
    # become instructions (BuildKit then refuses "hello" as an unknown instruction)
    df = parse("FROM alpine:3.20\nRUN cat << EOF > /x\nhello\nEOF\n")
    assert only(df, "RUN").heredocs == ()
    assert [p.message for p in df.problems] == ["unknown instruction: hello", "unknown instruction: EOF"]
    assert [p.line for p in df.problems] == [3, 4]


def test_exec_form_has_no_heredocs() -> None:
    run = only(parse('FROM alpine:3.20\nRUN ["cat", "<<EOF"]\n'), "RUN")
    assert run.exec_form and run.heredocs == ()


def test_heredoc_fed_to_a_shell_is_read_as_shell_and_to_python_is_not() -> None:
    df = parse(
        "FROM python:3.12-slim\n"
        "RUN bash <<EOF\nsudo id\nEOF\n"
        "RUN python3 <<EOF\nimport os; os.system('sudo id')\nEOF\n"
        "RUN <<EOF\n#!/usr/bin/env python3\nprint('sudo')\nEOF\n"
    )
    bash_run, py_run, shebang_run = (i for i in df.instructions if i.keyword == "RUN")
    assert programs(bash_run) == ["bash", "id"]
    assert bash_run.commands[1].nesting == "<<" and bash_run.commands[1].invocation.wrappers == ("sudo",)
    assert programs(py_run) == ["python3"]
    assert shebang_run.commands == ()


def test_unterminated_heredoc_is_refused() -> None:
    with pytest.raises(InputError) as err:
        parse_bytes(b"FROM alpine:3.20\nRUN <<EOF\necho never ends\nUSER app\n")
    assert err.value.source == "svc/Dockerfile"
    assert "line 2" in err.value.reason and "unterminated heredoc <<EOF" in err.value.reason


# --- stages and substitution ---------------------------------------------------------------------


def test_global_args_feed_from_and_stages_redeclare_them() -> None:
    df = parse(
        "ARG REGISTRY=ghcr.io/acme\n"
        "ARG TAG=3.20\n"
        "FROM --platform=$BUILDPLATFORM ${REGISTRY}/base:${TAG} AS Build\n"
        "RUN echo $TAG\n"
        "ARG TAG\n"
        "USER ${TAG}\n"
        "FROM build\n"
        "COPY --from=Build /out /out\n"
    )
    build, final = df.stages
    assert (build.name, build.image, build.resolved) == ("build", "ghcr.io/acme/base:3.20", True)
    assert build.platform == "${BUILDPLATFORM}"  # known to the builder only
    assert final.parent == 0 and final.image == "build"
    # TAG is global: invisible in the stage until "ARG TAG" re-imports its default
    run = only(df, "RUN")
    assert "TAG" not in run.scope
    assert only(df, "USER").expanded == ("3.20",)
    copy = only(df, "COPY")
    assert copy.flag_values("from") == ("Build",)
    assert df.stage_by_name("Build") is build and df.stage_by_name("0") is build


def test_env_is_inherited_by_a_child_stage_and_arg_is_not() -> None:
    df = parse(
        "FROM alpine:3.20 AS base\nARG A=1\nENV E=2\nFROM base\nUSER $E-$A\n",
    )
    assert only(df, "USER").expanded == ("2-",)


def test_env_values_see_the_variables_before_the_instruction() -> None:
    df = parse("FROM alpine:3.20\nENV A=1 B=$A\nENV C=$A\n")
    first, second = (i for i in df.instructions if i.keyword == "ENV")
    assert [(p.key, p.expanded) for p in first.pairs] == [("A", "1"), ("B", "")]
    assert second.pairs[0].expanded == "1"


@pytest.mark.parametrize(
    ("decl", "word", "expected", "resolved"),
    [
        ("ARG V=x", "${V:-d}", "x", True),
        ("ARG V=", "${V:-d}", "d", True),
        ("ARG V=", "${V-d}", "", True),
        ("ARG V=x", "${V:+alt}", "alt", True),
        ("ARG V=", "${V:+alt}", "", True),
        ("ARG OTHER=1", "${V:-d}", "d", True),
        ("ARG V", "$V", "${V}", False),  # a build argument without default: unknown
        ("ARG V", "${V:-d}", "d", True),  # ...but the default is what the build uses as written
        ("ARG V", "${V:+alt}", "${V:+alt}", False),
        ("ARG V=abc", "${V#a}", "${V#a}", False),  # pattern operators are not evaluated
        ("ARG V=x", "\\$V'$V'\"$V\"", "$V$Vx", True),
    ],
)
def test_substitution_forms(decl: str, word: str, expected: str, resolved: bool) -> None:
    user = only(parse(f"FROM alpine:3.20\n{decl}\nUSER {word}\n"), "USER")
    assert user.expanded == (expected,)
    assert user.resolved is resolved


def test_arg_with_two_words_declares_two_arguments() -> None:
    arg = only(parse("FROM alpine:3.20\nARG GIT_SSL_NO_VERIFY 0\n"), "ARG")
    assert [(p.key, p.expanded) for p in arg.pairs] == [("GIT_SSL_NO_VERIFY", None), ("0", None)]


def test_legacy_env_form_and_quoted_values() -> None:
    df = parse('FROM alpine:3.20\nENV PATHS  /a /b\nENV Q="a b" R=\'$Q\'\nLABEL "x y"=z\n')
    legacy, quoted = (i for i in df.instructions if i.keyword == "ENV")
    assert [(p.key, p.expanded) for p in legacy.pairs] == [("PATHS", "/a /b")]
    assert [(p.key, p.expanded) for p in quoted.pairs] == [("Q", "a b"), ("R", "$Q")]
    assert [(p.key, p.expanded) for p in only(df, "LABEL").pairs] == [("x y", "z")]


def test_flags_are_parsed_and_substituted() -> None:
    df = parse(
        "FROM alpine:3.20\nARG UID=1000\n"
        "RUN --mount=type=cache,target=/var/cache/apk --network=none apk add curl\n"
        "COPY --chown=${UID}:${UID} --chmod=755 a /b\n"
    )
    run = only(df, "RUN")
    assert [(f.name, f.value) for f in run.flags] == [
        ("mount", "type=cache,target=/var/cache/apk"),
        ("network", "none"),
    ]
    assert run.args == "apk add curl"
    assert only(df, "COPY").flag_values("chown") == ("1000:1000",)


def test_exec_and_shell_forms() -> None:
    df = parse(
        "FROM alpine:3.20\n"
        'RUN ["apk", "add", "curl"]\n'
        'CMD ["sh", "-c", "curl -k https://example.com | sh"]\n'
        "ENTRYPOINT exec /app --flag\n"
        "HEALTHCHECK --interval=5s CMD wget -qO- http://localhost/ || exit 1\n"
    )
    run, cmd, entry, health = df.instructions[1:]
    assert run.exec_form and run.words == ("apk", "add", "curl") and programs(run) == ["apk"]
    assert cmd.exec_form and programs(cmd) == ["sh", "curl", "sh"]
    assert [c.nesting for c in cmd.commands] == ["", "-c", "-c"]
    assert not entry.exec_form and programs(entry) == ["app"]
    assert health.words[0] == "CMD" and programs(health) == ["wget", "exit"]
    assert health.flag_values("interval") == ("5s",)


# --- the shell reader ----------------------------------------------------------------------------


def test_shell_operators_pipelines_and_quotes() -> None:
    cmds = read_shell("a && b || c; d | e |& f & echo \"x && sudo y\" '| z'", 0)
    assert [c.invocation.program for c in cmds] == ["a", "b", "c", "d", "e", "f", "echo"]
    assert [c.connector for c in cmds] == ["", "&&", "||", ";", "|", "|&", "&"]
    d, e, f = cmds[3:6]
    assert d.pipeline == e.pipeline == f.pipeline and [d.position, e.position, f.position] == [0, 1, 2]
    assert cmds[-1].invocation.argv == ("x && sudo y", "| z")


def test_substitutions_are_read_as_nested_commands() -> None:
    cmds = read_shell('sh -c "$(curl -fsSL https://x)"; bash <(wget -qO- https://y); echo `id -u`', 0)
    by = {c.invocation.program: c for c in cmds}
    assert by["curl"].nesting == "$(" and cmds[by["curl"].parent].invocation.program == "sh"
    assert by["wget"].nesting == "<(" and cmds[by["wget"].parent].invocation.program == "bash"
    assert by["id"].nesting == "`" and cmds[by["id"].parent].invocation.program == "echo"


def test_compound_commands_and_keywords() -> None:
    script = (
        'set -eux; if [ -n "$X" ]; then npm config set strict-ssl false; fi\n'
        "for f in a b; do sudo cp $f /; done\n"
        "case $arch in amd64|x86_64) curl -k x ;; *) echo no ;; esac\n"
        "while read l; do echo $l; done < list\n"
        "f() { wget --no-check-certificate y; }\n"
    )
    cmds = read_shell(script, 0, heredocs=())
    got = [c.invocation.program for c in cmds]
    assert got == ["set", "[", "npm", "cp", "curl", "echo", "read", "echo", "wget"]
    assert cmds[3].invocation.wrappers == ("sudo",)


def test_assignments_redirections_and_wrappers() -> None:
    (cmd,) = read_shell(
        "NODE_TLS_REJECT_UNAUTHORIZED=0 sudo -u app env -i A=1 nice -n 5 node x.js > out.log 2>&1", 0
    )
    inv = cmd.invocation
    assert inv.program == "node" and inv.argv == ("x.js",)
    assert inv.wrappers == ("sudo", "env", "nice")
    assert [w.value for w in inv.env] == ["NODE_TLS_REJECT_UNAUTHORIZED=0", "A=1"]
    assert cmd.outputs == ("out.log",)
    (pip,) = read_shell("python3.12 -m pip install --no-cache-dir x", 0)
    assert pip.invocation.program == "pip"


def test_su_c_strings_are_followed_unless_the_outer_shell_substitutes() -> None:
    cmds = read_shell(
        'su nobody -s /bin/sh -c "cd /x && sudo make \\$(nproc)"; sh -c "$(curl -s https://x)"', 0
    )
    got = [(c.invocation.program, c.nesting) for c in cmds]
    # "\$(nproc)" is escaped for the outer shell: the inner one runs it; the unescaped $(curl ...) is
    # run by the outer shell, and what the inner shell gets is its unknowable output
    assert got == [("su", ""), ("cd", "-c"), ("make", "-c"), ("nproc", "$("), ("sh", ""), ("curl", "$(")]


def test_shell_c_with_options_taking_values() -> None:
    cmds = read_shell("bash -o pipefail -ec 'sudo ls'", 0)
    assert [c.invocation.program for c in cmds] == ["bash", "ls"]
    assert cmds[1].invocation.wrappers == ("sudo",)


def test_shell_words_resolve_known_build_variables() -> None:
    df = parse("FROM alpine:3.20\nARG INSECURE=-k\nRUN curl $INSECURE ${URL} '$INSECURE'\n")
    (curl,) = only(df, "RUN").commands
    assert curl.invocation.argv == ("-k", "${URL}", "$INSECURE")


def test_onbuild_registers_an_instruction() -> None:
    df = parse("FROM alpine:3.20\nONBUILD RUN sudo make install\n")
    onbuild = only(df, "ONBUILD")
    assert onbuild.sub is not None and onbuild.sub.keyword == "RUN"
    assert [c.invocation.wrappers for c in onbuild.sub.commands] == [("sudo",)]


# --- problems BuildKit refuses -------------------------------------------------------------------


def test_problems_are_recorded_with_their_lines() -> None:
    df = parse(
        'RUN echo early\nFROM alpine:3.20\nRUNN echo typo\nSHELL /bin/bash\nCMD ["a", 1]\nENV ONLYKEY\n'
    )
    assert [(p.line, p.message.split(":")[0]) for p in df.problems] == [
        (1, "RUN before the first FROM (only ARG may come first)"),
        (3, "unknown instruction"),
        (4, "SHELL requires the arguments to be in JSON form"),
        (5, "when using JSON array syntax, arrays must be comprised of strings only"),
        (6, "ENV must have two arguments"),
    ]
    assert df.instructions[2].known is False


def test_file_without_from_is_a_problem_not_a_crash() -> None:
    df = parse("# just a comment\n\n")
    assert df.instructions == () and df.stages == ()
    assert [p.message for p in df.problems] == ["no FROM instruction"]


# --- locations and fingerprints ------------------------------------------------------------------


def _fingerprints(text: str) -> dict[tuple[str, int | None], str]:
    df = parse(text)
    ev = evaluate(default_registry(), Policy(), [df])
    return {(f.rule_id, f.location.line): f.fingerprint for f in ev.findings}


def test_fingerprints_survive_lines_inserted_above() -> None:
    base = "FROM alpine:3.20 AS app\nRUN sudo ls\nRUN sudo ls\nUSER root\n"
    moved = "# a new comment\nARG X=1\n\nFROM alpine:3.20 AS app\nLABEL a=b\nRUN sudo ls\nRUN sudo ls\nUSER root\n"
    before = _fingerprints(base)
    after = _fingerprints(moved)
    assert before[("dockerfile.sudo", 2)] == after[("dockerfile.sudo", 6)]
    assert before[("dockerfile.sudo", 3)] == after[("dockerfile.sudo", 7)]
    # two identical instructions are still two findings
    assert before[("dockerfile.sudo", 2)] != before[("dockerfile.sudo", 3)]
    assert before[("dockerfile.root-user", 4)] == after[("dockerfile.root-user", 8)]
    changed = _fingerprints(base.replace("RUN sudo ls\nRUN", "RUN sudo ls -l\nRUN"))
    assert changed[("dockerfile.sudo", 2)] != before[("dockerfile.sudo", 2)]


def test_locate_names_the_stage_and_instruction() -> None:
    df = parse("FROM alpine:3.20 AS Web\nRUN echo a \\\n && sudo b\n")
    run = only(df, "RUN")
    loc = df.locate((run.index, "at", run.commands[1].offset))
    assert (loc.file, loc.line, loc.kind, loc.name, loc.field) == (
        "Dockerfile",
        3,
        "Dockerfile",
        "web",
        "RUN",
    )


# --- hostile input -------------------------------------------------------------------------------


def test_ten_megabyte_single_line_is_refused() -> None:
    data = b"FROM alpine:3.20\nRUN " + b"a" * 10_000_000
    with pytest.raises(LimitExceeded) as err:
        parse_bytes(data)
    assert err.value.source == "svc/Dockerfile" and "8388608 bytes" in err.value.reason


def test_gigantic_logical_line_names_file_and_line() -> None:
    with pytest.raises(LimitExceeded) as err:
        parse_bytes(b"FROM alpine:3.20\nLABEL a=b\nRUN " + b"x" * 300_000 + b"\n")
    assert err.value.source == "svc/Dockerfile"
    assert err.value.reason.startswith("line 3: logical line longer than 262144 bytes")


def test_line_grown_by_continuations_is_refused() -> None:
    with pytest.raises(LimitExceeded) as err:
        parse_bytes(
            b"FROM alpine:3.20\nRUN a \\\n" + b"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb \\\n" * 8000 + b"c\n"
        )
    assert "line 2: logical line longer than" in err.value.reason


def test_hundred_thousand_instructions_are_refused() -> None:
    with pytest.raises(LimitExceeded) as err:
        parse_bytes(b"FROM alpine:3.20\n" + b"RUN true\n" * 100_000)
    assert err.value.reason == "line 10001: more than 10000 instructions"


@pytest.mark.parametrize("data", [b"FROM alpine\x00\nRUN a\n", b"\x7fELF\x02\x01\x01\x00\x00\x00"])
def test_nul_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(InputError) as err:
        parse_bytes(data)
    assert err.value.source == "svc/Dockerfile" and "binary data" in err.value.reason


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(InputError) as err:
        parse_bytes(b"FROM alpine:3.20\nRUN echo \xff\xfe\n")
    assert err.value.reason == "not valid UTF-8 (byte 26)"


def test_substitution_doubling_bomb_is_refused() -> None:
    lines = b"".join(b"ENV A%d=$A%d$A%d\n" % (i + 1, i, i) for i in range(60))
    with pytest.raises(LimitExceeded) as err:
        parse_bytes(b"FROM alpine:3.20\nENV A0=0123456789abcdef\n" + lines)
    assert "line 17: substitution expands beyond 262144 bytes" in err.value.reason


def test_substitution_fan_out_bomb_is_refused() -> None:
    data = b"FROM alpine:3.20\nARG B=" + b"b" * 100_000 + b"\nENV C=" + b"${B}" * 1000 + b"\n"
    with pytest.raises(LimitExceeded) as err:
        parse_bytes(data)
    assert err.value.reason.startswith("line 3: substitution expands beyond")


def test_substitution_total_budget_is_enforced() -> None:
    # each value stays under the line limit; together they would hold 80 MB in memory
    data = (
        b"FROM alpine:3.20\nARG B="
        + b"b" * 200_000
        + b"\n"
        + b"".join(b"ENV C%d=$B\n" % i for i in range(400))
    )
    with pytest.raises(LimitExceeded) as err:
        parse_bytes(data)
    assert "substitutions expand to more than 33554432 bytes in total" in err.value.reason


def test_nested_substitution_is_refused() -> None:
    with pytest.raises(LimitExceeded) as err:
        parse_bytes(b"FROM alpine:3.20\nENV A=" + b"${A:-" * 5000 + b"x" + b"}" * 5000 + b"\n")
    assert err.value.reason == "line 2: substitutions nested deeper than 32"


@pytest.mark.parametrize(
    ("prefix", "opener", "closer", "suffix"),
    [(b"", b"$(", b")", b""), (b"", b"(", b")", b""), (b"sh -c '", b"$(", b")", b"'")],
)
def test_shell_nesting_bomb_is_refused(prefix: bytes, opener: bytes, closer: bytes, suffix: bytes) -> None:
    # the last case nests inside an "sh -c" string, which the reader follows as a script too
    data = b"FROM alpine:3.20\nRUN " + prefix + opener * 3000 + b"x" + closer * 3000 + suffix + b"\n"
    with pytest.raises(LimitExceeded) as err:
        parse_bytes(data)
    assert "nested deeper than 32" in err.value.reason and err.value.reason.startswith("line 2")


def test_variable_scope_bomb_is_refused() -> None:
    # 10k ENVs each adding a variable would copy 50M entries into per-instruction scopes
    data = b"FROM alpine:3.20\n" + b"".join(b"ENV V%d=1\n" % i for i in range(9_990))
    with pytest.raises(LimitExceeded) as err:
        parse_bytes(data)
    assert "variable definitions" in err.value.reason


def test_time_budget_is_enforced() -> None:
    with pytest.raises(LimitExceeded) as err:
        parse_bytes(b"FROM alpine:3.20\n" + b"\n" * 70_000, limits=Limits(file_seconds=0.0))
    assert "took longer than 0.0 s" in err.value.reason


_PIECES = (
    "FROM", "RUN", "ENV", "ARG", "COPY", "ADD", "USER", "ONBUILD", "HEALTHCHECK", "CMD", "EXPOSE", "SHELL", " ",
    "\n", "\\\n", "\\", "`", "'", '"', "$", "${", "}", "${A:-", ":+", "$(", ")", "(", "|", "&&", ";", "&",
    "<<EOF", "<<-'X'", "EOF\n", "\tX\n", "#", "# escape=`\n", "=", "A", "sudo", "curl", "-k", "sh", "-c",
    "apt-get", "install", "update", "chmod", "777", "[", "]", '["a",', "1]", "--mount=type=cache,target=/x",
    "--from=", "AS", "22", "-", "<(", ">", "2>&1", "case", "in", "esac", "if", "then", "fi", "{", "\x0b", "é",
)  # fmt: skip


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_PIECES), max_size=120), st.booleans())
def test_random_dockerfile_text_never_crashes(pieces: list[str], with_from: bool) -> None:
    """Any text is either read (and every rule runs without error, locating findings inside the file)
    or refused with an InputError: never another exception."""
    text = ("FROM alpine\n" if with_from else "") + "".join(pieces)
    try:
        df = parse(text)
    except InputError:
        return
    ev = evaluate(default_registry(), Policy(allowed_registries=("ghcr.io/acme",)), [df])
    assert ev.errors == ()
    for f in ev.findings:
        assert f.location.line is not None and 1 <= f.location.line <= text.count("\n") + 1


def test_deep_json_is_not_a_crash() -> None:
    run = only(parse_bytes(b"FROM alpine:3.20\nRUN " + b"[" * 50_000 + b"\n"), "RUN")
    assert not run.exec_form


# --- through the engine ----------------------------------------------------------------------------


def test_scan_discovers_dockerfiles_by_name(tmp_path: Path) -> None:
    for rel in (
        "Dockerfile",
        "api.Dockerfile",
        "Containerfile",
        "svc/Dockerfile.prod",
        "Dockerfile.dockerignore",
    ):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("FROM alpine\nRUN sudo true\n")
    (tmp_path / "notes.txt").write_text("FROM alpine\nRUN sudo true\n")
    (tmp_path / "bad" / "Dockerfile").parent.mkdir()
    (tmp_path / "bad" / "Dockerfile").write_bytes(b"FROM alpine\nRUN <<EOF\nno end\n")

    report = make_scanner().scan([str(tmp_path)])
    sudo = sorted(
        Path(f.location.file).relative_to(tmp_path).as_posix()
        for f in report.findings
        if f.rule_id == "dockerfile.sudo"
    )
    assert sudo == ["Containerfile", "Dockerfile", "api.Dockerfile", "svc/Dockerfile.prod"]
    assert all(f.location.line == 2 for f in report.findings if f.rule_id == "dockerfile.sudo")
    # the broken file is an error naming it: the scan fails closed
    assert [e.source for e in report.errors] == [str(tmp_path / "bad" / "Dockerfile")]
    assert "unterminated heredoc" in report.errors[0].message
    assert report.exit_code == 2
