"""The bounded YAML loader: line marks for fields, and every hostile input refused with a clear error."""

from __future__ import annotations

import pytest

from dutyguard.errors import InputError, LimitExceeded
from dutyguard.limits import Limits
from dutyguard.sources.yamldoc import load_documents

LIMITS = Limits()


def test_lines_point_at_each_key_and_item() -> None:
    text = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: a\n    image: x\n"
    (doc,) = load_documents(text, "pod.yaml", LIMITS)
    assert doc.lines[("spec",)] == 3
    assert doc.lines[("spec", "containers", 0)] == 5
    assert doc.lines[("spec", "containers", 0, "image")] == 6


def test_multi_document_stream_keeps_document_start_lines() -> None:
    docs = load_documents("a: 1\n---\nb: 2\n---\n# only a comment\nc: 3\n", "multi.yaml", LIMITS)
    assert [d.value for d in docs] == [{"a": 1}, {"b": 2}, {"c": 3}]
    assert [d.line for d in docs] == [1, 3, 6]


def test_scalars_resolve_like_yaml_1_1_but_never_construct_objects() -> None:
    (doc,) = load_documents(
        "t: true\nn: null\ni: 42\nf: 1.5\ns: '42'\nts: 2024-01-01\npy: !!python/object:os.system echo\n",
        "s",
        LIMITS,
    )
    assert doc.value == {"t": True, "n": None, "i": 42, "f": 1.5, "s": "42", "ts": "2024-01-01", "py": "echo"}


def test_merge_keys_apply_with_explicit_keys_winning() -> None:
    (doc,) = load_documents("base: &b {x: 1, y: 2}\nobj:\n  <<: *b\n  y: 3\n", "m", LIMITS)
    assert doc.value["obj"] == {"x": 1, "y": 3}  # type: ignore[index]


def test_alias_bomb_is_refused() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
    # 10^9 nodes if expanded; refused at the node bound (kept small so a loaded machine never
    # reaches the time budget first), long before memory or time could suffer.
    with pytest.raises(LimitExceeded, match=r"bomb\.yaml: more than 50000 YAML nodes"):
        load_documents("\n".join(lines), "bomb.yaml", Limits(max_nodes=50_000))


def test_deep_flow_nesting_is_refused() -> None:
    with pytest.raises(InputError, match=r"deep\.yaml: .*nesting depth"):
        load_documents("[" * 50_000 + "]" * 50_000, "deep.yaml", LIMITS)


def test_nesting_deeper_than_our_limit_is_refused() -> None:
    text = "[" * 150 + "]" * 150
    with pytest.raises(LimitExceeded, match="nesting deeper than 100"):
        load_documents(text, "deep2.yaml", LIMITS)


def test_duplicate_keys_are_refused_because_they_hide_values() -> None:
    text = "spec:\n  containers:\n  - name: a\n    securityContext:\n      privileged: false\n      privileged: true\n"
    with pytest.raises(InputError, match=r"dup\.yaml: line 6: duplicate key 'privileged'"):
        load_documents(text, "dup.yaml", LIMITS)


def test_broken_yaml_names_file_and_line() -> None:
    with pytest.raises(InputError, match=r"broken\.yaml: invalid YAML: line 2"):
        load_documents("a: [1, 2\nb: c\n", "broken.yaml", LIMITS)


def test_too_many_documents_refused() -> None:
    with pytest.raises(LimitExceeded, match="more than 5 YAML documents"):
        load_documents("---\na: 1\n" * 6, "many.yaml", Limits(max_documents=5))


def test_complex_mapping_keys_refused() -> None:
    with pytest.raises(InputError, match="mapping key must be a scalar"):
        load_documents("? [a, b]\n: c\n", "k.yaml", LIMITS)


def test_explicit_key_line_wins_over_merged_one() -> None:
    (doc,) = load_documents("base: &b {x: 1, y: 2}\nobj:\n  <<: *b\n  y: 3\n", "m", LIMITS)
    assert doc.lines[("obj", "y")] == 4
    assert doc.lines[("obj", "x")] == 1


def test_explicit_key_before_the_merge_key_still_wins_value_and_line() -> None:
    (doc,) = load_documents("base: &b {x: 1, y: 2}\nobj:\n  y: 3\n  <<: *b\n", "m", LIMITS)
    assert doc.value["obj"] == {"x": 1, "y": 3}  # type: ignore[index]
    assert doc.lines[("obj", "y")] == 3
    assert doc.lines[("obj", "x")] == 1


@pytest.mark.parametrize("merge", ["<<", "!!merge <<", "!!merge '<<'"])
def test_explicitly_tagged_merge_key_is_a_merge_too(merge: str) -> None:
    """A ``!!merge`` tag skips the resolver, so the loader cannot see it coming: the document is
    converted again the slow way, with the same result as a plain ``<<``."""
    text = f"first: {{a: 1}}\nbase: &b {{x: 1, y: 2}}\nobj:\n  y: 3\n  {merge}: *b\n"
    (doc,) = load_documents(text, "m", LIMITS)
    assert doc.value == {"first": {"a": 1}, "base": {"x": 1, "y": 2}, "obj": {"x": 1, "y": 3}}
    assert doc.lines[("obj", "y")] == 4
    assert doc.lines[("obj", "x")] == 2
    assert doc.lines[("first", "a")] == 1


def test_earlier_merge_source_wins() -> None:
    (doc,) = load_documents("a: &a {k: 1}\nb: &b {k: 2, j: 3}\nc:\n  <<: [*a, *b]\n", "m", LIMITS)
    assert doc.value["c"] == {"k": 1, "j": 3}  # type: ignore[index]


def test_fast_scalar_resolution_agrees_with_pyyaml() -> None:
    import random
    import string

    import yaml

    from dutyguard.sources.yamldoc import _Loader

    rng = random.Random(7)
    samples = [
        "yes",
        "No",
        "on",
        "~",
        "",
        "0x1f",
        "1_000",
        ".inf",
        "2001-12-14",
        "<<",
        "=",
        "!",
        "&",
        "*",
        "hello",
    ]
    samples += [
        "".join(rng.choice(string.printable[:94]) for _ in range(rng.randint(1, 6))) for _ in range(3000)
    ]
    for v in samples:
        expected = yaml.SafeLoader("").resolve(yaml.ScalarNode, v, (True, False))
        assert _Loader("").resolve(yaml.ScalarNode, v, (True, False)) == expected, v
