"""Exceptions (waivers): the value type and the matcher that applies a snapshot to findings.

Public interface: ``dutyguard.exceptions.model`` (``ExceptionGrant``, ``ExceptionScope``,
``InvalidException``) and ``dutyguard.exceptions.matcher`` (``MatchContext``,
``ExceptionMatcher``). Only exceptions from a verified, signed snapshot are ever applied;
inline suppressions in scanned files are reported, never honoured.
"""
