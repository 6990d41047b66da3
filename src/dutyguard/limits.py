"""Bounds on everything read from outside, as typed configuration.

Defaults are sized for real repositories (the largest Helm render we have seen is a few MB);
anything past them is hostile or a mistake, and is reported as an error naming the input.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    max_file_bytes: int = 8 * 1024 * 1024
    """Largest file parsed as Kubernetes YAML/JSON or as a Dockerfile."""
    max_secret_scan_bytes: int = 16 * 1024 * 1024
    """Largest file searched for secrets; larger text files are reported, not scanned partially."""
    max_documents: int = 10_000
    """YAML documents (and List items) per file."""
    max_nodes: int = 500_000
    """YAML nodes per file, counting every alias expansion (defeats alias bombs)."""
    max_depth: int = 100
    """Nesting depth of a YAML/JSON document (libyaml itself refuses past 1000)."""
    max_line_bytes: int = 256 * 1024
    """Longest Dockerfile logical line (after joining continuations)."""
    max_instructions: int = 10_000
    """Dockerfile instructions per file."""
    max_files: int = 200_000
    """Files visited in one scan."""
    file_seconds: float = 2.0
    """Wall-clock budget for one file's parsing and evaluation."""
    subprocess_seconds: float = 60.0
    """Budget for an external helper (kubectl kustomize)."""


DEFAULT_LIMITS = Limits()
