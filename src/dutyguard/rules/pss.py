"""Pod Security Standards, baseline and restricted, as pod-security-admission (PSA) evaluates them.

One rule per PSA check id, at PSA's latest policy version: rule ``pss.<kebab-case check id>``,
pack ``pss-baseline`` or ``pss-restricted``, control ``pss:<checkId>``. The question every rule
answers is PSA's: would a namespace enforcing this level reject the pod (or the pods a workload
template creates)? Where PSA replaces a baseline check at restricted, only the restricted rule
reports. Facts and helpers are in ``pss_common``; the checks in ``pss_baseline`` and
``pss_restricted``.
"""

from __future__ import annotations

from dutyguard.core.rule import AnyRule
from dutyguard.rules import pss_baseline, pss_restricted


def rules() -> list[AnyRule]:
    return [*pss_baseline.rules(), *pss_restricted.rules()]
