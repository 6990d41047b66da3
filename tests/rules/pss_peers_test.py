"""Pod Security Standards rules against third-party fixtures (read-only, /work/shared/data).

* kubewarden: the AdmissionRequests of its PSP-style policies, with ``EXPECTED_E2E.json`` saying
  allowed/denied per request and settings. For each e2e case we assert exactly which resource and
  field our corresponding rule reports, and whether that agrees with kubewarden's verdict. Where it
  does not, kubewarden's policy is configurable (allow-lists, skip init containers, MustRunAs...)
  while PSA's levels are fixed; the reason is written next to the case.
* kube-score, kubesec and checkov: manifests whose expectation for privileged containers, host
  namespaces, host ports, hostPath, capabilities, AppArmor and seccomp agrees with PSA, scanned
  through the real engine so the line numbers are checked on real YAML.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dutyguard.core.policy import Policy, PSSLevel
from tests.conftest import SHARED_DATA, make_scanner
from tests.rules.pss_support import BASELINE, RESTRICTED, admission_object, findings

KW = "kubewarden-policies/policies"

# Which of our rules answers each kubewarden policy, and at which PSA level.
POLICY_RULE: dict[str, tuple[str, PSSLevel]] = {
    "allow-privilege-escalation-psp-policy": ("pss.allow-privilege-escalation", RESTRICTED),
    "apparmor-psp-policy": ("pss.app-armor-profile", BASELINE),
    "capabilities-psp-policy": ("pss.capabilities-baseline", BASELINE),
    "flexvolume-drivers-psp-policy": ("pss.restricted-volumes", RESTRICTED),
    "hostpaths-psp-policy": ("pss.host-path-volumes", BASELINE),
    "pod-privileged-policy": ("pss.privileged", BASELINE),
    "selinux-psp-policy": ("pss.se-linux-options", BASELINE),
    "sysctl-psp-policy": ("pss.sysctls", BASELINE),
    "user-group-psp-policy": ("pss.run-as-user", RESTRICTED),
    "volumes-psp-policy": ("pss.restricted-volumes", RESTRICTED),
}

Hit = tuple[str | None, str]
"""(container, offending field) of one finding."""


@dataclass(frozen=True)
class Expect:
    hits: list[Hit]
    """What our rule reports, exactly."""
    agrees: bool = True
    """Whether PSA's verdict at the level (``hits`` plus ``also``) is kubewarden's (denied or allowed)."""
    why: str = ""
    also: dict[str, list[Hit]] = field(default_factory=dict)
    """Other rules' findings at the same level that decide PSA's verdict."""


def _c(i: int, rest: str, name: str, base: str = "spec") -> Hit:
    return (name, f"{base}.containers[{i}].{rest}")


HOSTPATH_0_1 = [(None, "spec.volumes[0].hostPath"), (None, "spec.volumes[1].hostPath")]
KW_CONFIGURABLE = "kubewarden's allow-list is configurable; PSA's is fixed"

E2E: dict[tuple[str, str], Expect] = {
    # --- allowPrivilegeEscalation (restricted) -----------------------------------------------------
    ("allow-privilege-escalation-psp-policy", "accept pod with allowPrivilegeEscalation disabled"): Expect(
        []
    ),
    ("allow-privilege-escalation-psp-policy", "accept pod without security context"): Expect(
        [_c(0, "securityContext.allowPrivilegeEscalation", "nginx")],
        agrees=False,
        why="kubewarden refuses only an explicit true by default; PSA restricted requires an explicit false",
    ),
    (
        "allow-privilege-escalation-psp-policy",
        "reject pod with container with security context and allowPrivilegeEscalation set to true",
    ): Expect(
        [
            _c(0, "securityContext.allowPrivilegeEscalation", "nginx"),
            _c(1, "securityContext.allowPrivilegeEscalation", "sidecar"),  # unset: PSA refuses it too
        ]
    ),
    (
        "allow-privilege-escalation-psp-policy",
        "reject pod with init container with security context and allowPrivilegeEscalation set to true",
    ): Expect(
        [
            ("init-myservice", "spec.initContainers[0].securityContext.allowPrivilegeEscalation"),
            _c(0, "securityContext.allowPrivilegeEscalation", "nginx"),
            _c(1, "securityContext.allowPrivilegeEscalation", "sidecar"),
        ]
    ),
    # --- AppArmor (baseline) ---------------------------------------------------------------------------
    ("apparmor-psp-policy", "accept pod with allowed profile (runtime/default)"): Expect([]),
    ("apparmor-psp-policy", "accept pod with no profile specified (defaults to safe)"): Expect([]),
    ("apparmor-psp-policy", "reject pod with unconfined profile"): Expect(
        [
            (
                "test-container",
                "metadata.annotations.container.apparmor.security.beta.kubernetes.io/test-container",
            )
        ]
    ),
    # --- capabilities (baseline): every case agrees with PSA's default set ------------------------------
    ("capabilities-psp-policy", "Accept all capabilities when star in allowed capabilities"): Expect([]),
    (
        "capabilities-psp-policy",
        "Reject when star in allowed capabilities and capabilities in required_drop_capabilities",
    ): Expect([_c(0, "securityContext.capabilities.add[0]", "hello")], why="BPF is beyond the default set"),
    ("capabilities-psp-policy", "Reject capabilities in required_drop_capabilities"): Expect(
        [_c(0, "securityContext.capabilities.add[0]", "hello")]
    ),
    ("capabilities-psp-policy", "Accept capabilities in allowed capabilities"): Expect([]),
    ("capabilities-psp-policy", "Reject capabilities not in allowed capabilities"): Expect(
        [_c(0, "securityContext.capabilities.add[0]", "hello")]
    ),
    ("capabilities-psp-policy", "Mutate pods"): Expect([]),  # KILL is in the default set
    ("capabilities-psp-policy", "Mutate deployments"): Expect([]),
    # --- flexVolume (restricted volume types) -----------------------------------------------------------
    ("flexvolume-drivers-psp-policy", "Accept pod with an allowed flexVolume driver"): Expect(
        [(None, "spec.volumes[0].flexVolume")],
        agrees=False,
        why="PSA restricted forbids flexVolume whatever the driver (baseline allows it)",
    ),
    ("flexvolume-drivers-psp-policy", "Accept pod without any flexVolume"): Expect([]),
    ("flexvolume-drivers-psp-policy", "Reject pod with not listed flexVolume driver"): Expect(
        [(None, "spec.volumes[0].flexVolume")]
    ),
    # --- hostPath (baseline) -----------------------------------------------------------------------------
    ("hostpaths-psp-policy", "reject because /data is not in settings"): Expect(
        [*HOSTPATH_0_1, (None, "spec.volumes[2].hostPath")]
    ),
    ("hostpaths-psp-policy", "accept because pod has no hostPath volumes"): Expect([]),
    ("hostpaths-psp-policy", "accept because /var/local has precedence over /var"): Expect(
        HOSTPATH_0_1,
        agrees=False,
        why="kubewarden allows listed path prefixes; PSA allows no hostPath at all",
    ),
    # --- privileged (baseline) ---------------------------------------------------------------------------
    ("pod-privileged-policy", "reject because privileged container"): Expect(
        [_c(1, "securityContext.privileged", "nginx")]
    ),
    ("pod-privileged-policy", "accept"): Expect([]),
    ("pod-privileged-policy", "reject deployment because privileged container"): Expect(
        [_c(0, "securityContext.privileged", "nginx", "spec.template.spec")]
    ),
    ("pod-privileged-policy", "reject statefulset because privileged container"): Expect(
        [_c(0, "securityContext.privileged", "nginx", "spec.template.spec")]
    ),
    ("pod-privileged-policy", "accept privileged init container when required"): Expect(
        [("nginx", "spec.initContainers[0].securityContext.privileged")],
        agrees=False,
        why="the settings skip init containers; PSA checks init and ephemeral containers like any other",
    ),
    ("pod-privileged-policy", "accept privileged ephemeral container when required"): Expect(
        [("nginx", "spec.ephemeralContainers[0].securityContext.privileged")],
        agrees=False,
        why="the settings skip ephemeral containers; PSA checks them (a debug container is still a container)",
    ),
    # --- SELinux (baseline) --------------------------------------------------------------------------------
    ("selinux-psp-policy", "RunAsAny: accept any pod"): Expect([]),
    # agrees on the request; note that the mutation kubewarden then applies (type spc_t, user
    # system_u, role system_r) is exactly what PSA baseline forbids
    ("selinux-psp-policy", "MustRunAs: mutate pod with missing settings"): Expect([]),
    ("selinux-psp-policy", "MustRunAs: reject pod with wrong settings"): Expect(
        [
            _c(0, "securityContext.seLinuxOptions.role", "nginx"),
            _c(0, "securityContext.seLinuxOptions.type", "nginx"),
            _c(0, "securityContext.seLinuxOptions.user", "nginx"),
        ]
    ),
    # --- sysctls (baseline) ---------------------------------------------------------------------------------
    ("sysctl-psp-policy", "accept because pod doesn't list any sysctls"): Expect([]),
    ("sysctl-psp-policy", "accept because sysctls are all on safe list"): Expect([]),
    ("sysctl-psp-policy", "accept because net.core.somaxconn is allowed"): Expect(
        [(None, "spec.securityContext.sysctls[0].name")], agrees=False, why=KW_CONFIGURABLE
    ),
    ("sysctl-psp-policy", "reject because net.* is forbidden"): Expect(
        [(None, "spec.securityContext.sysctls[0].name")]
    ),
    # --- runAsUser (restricted) -------------------------------------------------------------------------------
    (
        "user-group-psp-policy",
        "RunAsAny should accept empty runAsUser, runAsGroup and supplementalGroups",
    ): Expect([], why="a mutation test without a verdict; PSA allows an unset runAsUser"),
    ("user-group-psp-policy", "MustRunAsNonRoot should reject 0 as user ID"): Expect(
        [_c(1, "securityContext.runAsUser", "nginx")]
    ),
    ("user-group-psp-policy", "MustRunAsNonRoot should mutate request when runAsUser is not defined"): Expect(
        []
    ),
    (
        "user-group-psp-policy",
        "MustRunAsNonRoot should not mutate request when runAsUser is not defined and policy is configured to validate only",
    ): Expect(
        [],
        why="PSA's runAsUser check allows an unset UID, as ours does; the verdict still agrees because "
        "restricted refuses the pod through runAsNonRoot",
        also={
            "pss.run-as-non-root": [
                _c(0, "securityContext.runAsNonRoot", "sleeping-sidecar"),
                _c(1, "securityContext.runAsNonRoot", "nginx"),
            ]
        },
    ),
    ("user-group-psp-policy", "MustRunAsNonRoot should accept request when user defined is not root"): Expect(
        []
    ),
    # --- volume types (restricted) ---------------------------------------------------------------------------------
    ("volumes-psp-policy", "reject because allowedTypes is empty"): Expect(HOSTPATH_0_1),
    ("volumes-psp-policy", "reject because types not present"): Expect(
        HOSTPATH_0_1, why="kubewarden refuses the projected volume; PSA allows it and refuses the hostPaths"
    ),
    ("volumes-psp-policy", "reject because mix of '*' and other types"): Expect(
        HOSTPATH_0_1, why="a settings-validation test: no verdict on the pod"
    ),
    ("volumes-psp-policy", "accept all types"): Expect(HOSTPATH_0_1, agrees=False, why=KW_CONFIGURABLE),
    ("volumes-psp-policy", "accept pods with no volumes"): Expect([]),
    ("volumes-psp-policy", "accept pods with correct types"): Expect(
        HOSTPATH_0_1, agrees=False, why=KW_CONFIGURABLE
    ),
    ("volumes-psp-policy", "ignore initContainers volumes: only main container volumes are checked"): Expect(
        HOSTPATH_0_1
    ),
    ("volumes-psp-policy", "ignore initContainers volumes: all main container volumes allowed"): Expect(
        HOSTPATH_0_1, agrees=False, why=KW_CONFIGURABLE
    ),
}


def _e2e() -> list[dict[str, object]]:
    data: list[dict[str, object]] = json.loads(
        (SHARED_DATA / "kubewarden-policies" / "EXPECTED_E2E.json").read_text()
    )
    return [e for e in data if e["policy"] in POLICY_RULE]


def _ours(request: Path, rule: str, level: PSSLevel) -> list[Hit]:
    got = [f for f in findings(admission_object(request), level) if f.rule_id == rule]
    return sorted(
        ((f.location.container, f.location.field or "") for f in got), key=lambda h: (h[1], h[0] or "")
    )


def _sorted(hits: list[Hit]) -> list[Hit]:
    return sorted(hits, key=lambda h: (h[1], h[0] or ""))


def test_every_kubewarden_e2e_case_of_a_pss_policy_is_in_our_table(shared_data: Path) -> None:
    cases = {(str(e["policy"]), str(e["test"])) for e in _e2e()}
    assert cases == set(E2E)


@pytest.mark.parametrize("key", sorted(E2E), ids=[f"{p}:{t}" for p, t in sorted(E2E)])
def test_kubewarden_e2e_case(shared_data: Path, key: tuple[str, str]) -> None:
    (entry,) = [e for e in _e2e() if (e["policy"], e["test"]) == key]
    expect = E2E[key]
    rule, level = POLICY_RULE[key[0]]
    request = shared_data / "kubewarden-policies" / str(entry["request"])
    ours = _ours(request, rule, level)
    assert ours == _sorted(expect.hits)
    for other, hits in expect.also.items():
        assert _ours(request, other, level) == _sorted(hits)
    allowed = entry["expected_allowed"]
    if allowed is None:  # settings validation or mutation only: nothing to compare
        return
    psa_denies = bool(ours) or any(expect.also.values())
    kubewarden_denies = allowed is False
    assert (psa_denies == kubewarden_denies) is expect.agrees, expect.why


# Requests without an e2e case: what our rule reports on each, resource by resource.
FIXTURES: list[tuple[str, str, PSSLevel, list[Hit]]] = [
    (
        "allow-privilege-escalation-psp-policy/test_data/deployment_with_allow_privileged_escalation.json",
        "pss.allow-privilege-escalation",
        RESTRICTED,
        [_c(0, "securityContext.allowPrivilegeEscalation", "nginx", "spec.template.spec")],
    ),
    # localhost/<profile> is a profile loaded on the node: PSA allows it
    (
        "apparmor-psp-policy/test_data/req_pod_with_custom_apparmor_profile.json",
        "pss.app-armor-profile",
        BASELINE,
        [],
    ),
    (
        "apparmor-psp-policy/test_data/req_pod_without_apparmor_profile.json",
        "pss.app-armor-profile",
        BASELINE,
        [],
    ),
    (
        "capabilities-psp-policy/test_data/req_pod_with_container_with_capabilities_added.json",
        "pss.capabilities-baseline",
        BASELINE,
        [
            _c(0, "securityContext.capabilities.add[0]", "nginx"),
            _c(0, "securityContext.capabilities.add[1]", "nginx"),
        ],
    ),
    (
        "capabilities-psp-policy/test_data/req_pod_with_container_with_capabilities_added_and_sidecar.json",
        "pss.capabilities-baseline",
        BASELINE,
        [
            _c(0, "securityContext.capabilities.add[0]", "nginx"),
            _c(0, "securityContext.capabilities.add[1]", "nginx"),
        ],
    ),
    (
        "capabilities-psp-policy/test_data/req_pod_with_container_with_capabilities_added_for_deployment.json",
        "pss.capabilities-baseline",
        BASELINE,
        [
            _c(0, "securityContext.capabilities.add[0]", "nginx", "spec.template.spec"),
            _c(0, "securityContext.capabilities.add[1]", "nginx", "spec.template.spec"),
        ],
    ),
    (
        "capabilities-psp-policy/test_data/req_pod_without_security_context.json",
        "pss.capabilities-baseline",
        BASELINE,
        [],
    ),
    ("capabilities-psp-policy/test_data/panic.json", "pss.capabilities-baseline", BASELINE, []),
    (
        "host-namespaces-psp-policy/test_data/pod_request.json",
        "pss.host-namespaces",
        BASELINE,
        [(None, "spec.hostIPC"), (None, "spec.hostNetwork"), (None, "spec.hostPID")],
    ),
    (
        "host-namespaces-psp-policy/test_data/pod_request.json",
        "pss.host-ports",
        BASELINE,
        [_c(0, "ports[0].hostPort", "nginx")],
    ),
    (
        "host-namespaces-psp-policy/test_data/deployment_request.json",
        "pss.host-namespaces",
        BASELINE,
        [
            (None, "spec.template.spec.hostIPC"),
            (None, "spec.template.spec.hostNetwork"),
            (None, "spec.template.spec.hostPID"),
        ],
    ),
    (
        "hostpaths-psp-policy/test_data/request-pod-multiple-containers.json",
        "pss.host-path-volumes",
        BASELINE,
        HOSTPATH_0_1,
    ),
    (
        "hostpaths-psp-policy/test_data/request-pod-precedence-least.json",
        "pss.host-path-volumes",
        BASELINE,
        HOSTPATH_0_1,
    ),
    # at restricted the same volumes are reported by restrictedVolumes, which replaces hostPathVolumes
    ("hostpaths-psp-policy/test_data/request-pod-hostpaths.json", "pss.host-path-volumes", RESTRICTED, []),
    (
        "hostpaths-psp-policy/test_data/request-pod-hostpaths.json",
        "pss.restricted-volumes",
        RESTRICTED,
        [*HOSTPATH_0_1, (None, "spec.volumes[2].hostPath")],
    ),
    ("selinux-psp-policy/test_data/pod_creation.json", "pss.se-linux-options", BASELINE, []),
    ("selinux-psp-policy/test_data/ingress_creation.json", "pss.se-linux-options", BASELINE, []),
    *[
        (
            f"user-group-psp-policy/test_data/{kind}_root_user.json",
            "pss.run-as-user",
            RESTRICTED,
            [_c(0, "securityContext.runAsUser", name, base)],
        )
        for kind, name, base in [
            ("cronjob", "hello", "spec.jobTemplate.spec.template.spec"),
            ("daemonset", "fluentd-elasticsearch", "spec.template.spec"),
            ("deployment", "nginx", "spec.template.spec"),
            ("job", "pi", "spec.template.spec"),
            ("replicaset", "nginx", "spec.template.spec"),
            ("replicationcontroller", "nginx", "spec.template.spec"),
            ("statefulset", "nginx", "spec.template.spec"),
        ]
    ],
    *[
        (
            f"user-group-psp-policy/test_data/{kind}_with_no_securitycontext.json",
            "pss.run-as-user",
            RESTRICTED,
            [],
        )
        for kind in (
            "cronjob",
            "daemonset",
            "deployment",
            "job",
            "replicaset",
            "replicationcontroller",
            "statefulset",
        )
    ],
    ("user-group-psp-policy/test_data/deployment_with_user.json", "pss.run-as-user", RESTRICTED, []),
    ("user-group-psp-policy/test_data/e2e/pod_user_150.json", "pss.run-as-user", RESTRICTED, []),
    ("volumes-psp-policy/test_data/request-pod-no-volumes.json", "pss.restricted-volumes", RESTRICTED, []),
]


@pytest.mark.parametrize(
    ("request_file", "rule", "level", "expected"),
    FIXTURES,
    ids=[f"{f.split('/')[0]}:{f.rsplit('/', 1)[1]}:{r}:{lv.value}" for f, r, lv, _ in FIXTURES],
)
def test_kubewarden_request(
    shared_data: Path, request_file: str, rule: str, level: PSSLevel, expected: list[Hit]
) -> None:
    assert _ours(shared_data / KW / request_file, rule, level) == _sorted(expected)


# --- kube-score, kubesec, checkov through the real engine -------------------------------------------------


def _line(path: Path, needle: str, nth: int = 0) -> int:
    lines = [i for i, text in enumerate(path.read_text().splitlines(), 1) if needle in text]
    return lines[nth]


def _scan(path: Path, level: PSSLevel) -> set[tuple[str, int | None, str | None]]:
    report = make_scanner(Policy(pss_level=level)).scan([str(path)])
    assert report.errors == (), report.errors
    return {
        (f.rule_id, f.location.line, f.location.container)
        for f in report.findings
        if f.rule_id.startswith("pss.")
    }


Line = tuple[str, str, int, str | None]
"""(rule id, text on the expected line, which occurrence of that text, container)."""

PEER_FILES: list[tuple[str, PSSLevel, list[Line], str]] = [
    # kube-score: "Container Security Context Privileged" is GradeCritical / GradeAllOK
    (
        "kube-score/score/testdata/pod-security-context-privileged.yaml",
        BASELINE,
        [("pss.privileged", "privileged: True", 0, "foobar")],
        "critical",
    ),
    ("kube-score/score/testdata/pod-security-context-all-good.yaml", BASELINE, [], "all ok"),
    # kubesec: assert_lt_zero_points (a critical finding) / assert_zero_points
    (
        "kubesec/test/asset/score-0-cap-sys-admin.yml",
        BASELINE,
        [("pss.capabilities-baseline", "- SYS_ADMIN", 0, "sec-ctx-demo")],
        "lt zero",
    ),
    ("kubesec/test/asset/score-0-cap-chown.yml", BASELINE, [], "zero: CHOWN is in the default set"),
    (
        "kubesec/test/asset/score-0-cap-sys-admin-and-cap-chown.yml",
        BASELINE,
        [("pss.capabilities-baseline", "- SYS_ADMIN", 0, "sec-ctx-demo")],
        "lt zero",
    ),
    (
        "kubesec/test/asset/score-0-daemonset-host-network.yml",
        BASELINE,
        [("pss.host-namespaces", "hostNetwork: true", 0, None)],
        "lt zero",
    ),
    (
        "kubesec/test/asset/score-0-daemonset-host-pid.yml",
        BASELINE,
        [("pss.host-namespaces", "hostPID: true", 0, None)],
        "lt zero",
    ),
    (
        "kubesec/test/asset/score-0-daemonset-mount-docker-socket.yml",
        BASELINE,
        [("pss.host-path-volumes", "hostPath:", 0, None)],
        "lt zero",
    ),
    (
        "kubesec/test/asset/score-0-daemonset-volume-host-docker-socket.yml",
        BASELINE,
        [("pss.host-path-volumes", "hostPath:", 0, None)],
        "lt zero",
    ),
    (
        "kubesec/test/asset/score-0-dep-apparmor-unconfined-spec-securitycontext.yml",
        BASELINE,
        [("pss.app-armor-profile", "type: Unconfined", 0, None)],
        "lt zero",
    ),
    (
        "kubesec/test/asset/score-0-dep-apparmor-unconfined-container.yml",
        BASELINE,
        [("pss.app-armor-profile", "type: Unconfined", 0, "sotrustworthy-container")],
        "lt zero",
    ),
    (
        "kubesec/test/asset/score-0-dep-apparmor-unconfined-initcontainer.yml",
        BASELINE,
        # upstream named this init container "...-ephemeralcontainer"
        [("pss.app-armor-profile", "type: Unconfined", 0, "sotrustworthy-ephemeralcontainer")],
        "lt zero",
    ),
    (
        "kubesec/test/asset/score-0-dep-apparmor-unconfined-ephemeralcontainer.yml",
        BASELINE,
        [("pss.app-armor-profile", "type: Unconfined", 0, "sotrustworthy-ephemeralcontainer")],
        "lt zero",
    ),
    (
        "kubesec/test/asset/score-0-dep-apparmor-empty-securitycontext.yml",
        BASELINE,
        [],
        "zero: no profile is the runtime default",
    ),
    (
        "kubesec/test/asset/score-1-dep-apparmor-nonunconfined-spec-securitycontext.yml",
        BASELINE,
        [],
        "gt zero",
    ),
    ("kubesec/test/asset/score-1-dep-apparmor-nonunconfined-initcontainer.yml", BASELINE, [], "gt zero"),
    (
        "kubesec/test/asset/score-0-dep-seccomp-unconfined-spec-securitycontext.yml",
        BASELINE,
        [("pss.seccomp-profile-baseline", "type: Unconfined", 0, None)],
        "lt zero",
    ),
    (
        "kubesec/test/asset/score-0-dep-seccomp-unconfined-container.yml",
        BASELINE,
        [("pss.seccomp-profile-baseline", "type: Unconfined", 0, "sotrustworthy-container")],
        "lt zero",
    ),
    (
        "kubesec/test/asset/score-0-dep-seccomp-unconfined-ephemeralcontainer.yml",
        BASELINE,
        [("pss.seccomp-profile-baseline", "type: Unconfined", 0, "sotrustworthy-ephemeralcontainer")],
        "lt zero",
    ),
    ("kubesec/test/asset/score-1-dep-seccomp-nonunconfined-container.yml", BASELINE, [], "gt zero"),
    # checkov: -FAILED / -PASSED resources for CKV_K8S_16 (privileged), 17/18/19 (host namespaces),
    # 25/39 (added capabilities), 26 (hostPort)
    (
        "checkov/tests/kubernetes/checks/example_PrivilegedContainers/privilegedPod-FAILED.yaml",
        BASELINE,
        [
            ("pss.privileged", "privileged: true", 0, "busybox"),
            ("pss.host-namespaces", "hostNetwork: true", 0, None),
            ("pss.host-namespaces", "hostPID: true", 0, None),
            ("pss.host-path-volumes", "hostPath:", 0, None),
        ],
        "failed",
    ),
    (
        "checkov/tests/kubernetes/checks/example_PrivilegedContainers/nginx-deployment-PASSED.yaml",
        BASELINE,
        [],
        "passed",
    ),
    (
        "checkov/tests/kubernetes/checks/example_ShareHost/cronjob-hostresources-FAILED.yaml",
        BASELINE,
        [
            ("pss.host-namespaces", "hostPID: true", 0, None),
            ("pss.host-namespaces", "hostIPC: true", 0, None),
            ("pss.host-namespaces", "hostNetwork: true", 0, None),
        ],
        "failed",
    ),
    (
        "checkov/tests/kubernetes/checks/example_ShareHost/jenkinsDeployment-PASSED.yaml",
        BASELINE,
        [],
        "passed",
    ),
    (
        "checkov/tests/kubernetes/checks/example_AllowedCapabilitiesSysAdmin/pod-FAILED.yaml",
        BASELINE,
        [("pss.capabilities-baseline", "SYS_ADMIN", 0, "sec-ctx-1")],
        "failed",
    ),
    (
        "checkov/tests/kubernetes/checks/example_AllowedCapabilitiesSysAdmin/cronjob-PASSED.yaml",
        BASELINE,
        [],
        "passed",
    ),
    (
        "checkov/tests/kubernetes/checks/example_AllowedCapabilities/cassandra-FAILED.yaml",
        BASELINE,
        [("pss.capabilities-baseline", "- IPC_LOCK", 0, "cassandra")],
        "failed",
    ),
    (
        "checkov/tests/kubernetes/checks/example_HostPort/nginx-app-FAILED.yaml",
        BASELINE,
        [("pss.host-ports", "hostPort: 443", 0, "nginx")],
        "failed",
    ),
    ("checkov/tests/kubernetes/checks/example_HostPort/nginx-app-PASSED.yaml", BASELINE, [], "passed"),
]


@pytest.mark.parametrize(
    ("rel", "level", "expected", "peer_says"),
    PEER_FILES,
    ids=[f"{r.split('/')[0]}:{r.rsplit('/', 1)[1]}" for r, _, _, _ in PEER_FILES],
)
def test_peer_fixture_through_the_engine(
    shared_data: Path, rel: str, level: PSSLevel, expected: list[Line], peer_says: str
) -> None:
    path = shared_data / rel
    want = {(rule, _line(path, needle, nth), container) for rule, needle, nth, container in expected}
    relevant = {rule for rule, _, _, _ in expected} | {
        "pss.privileged",
        "pss.host-namespaces",
        "pss.capabilities-baseline",
        "pss.host-ports",
        "pss.app-armor-profile",
        "pss.seccomp-profile-baseline",
    }
    got = {hit for hit in _scan(path, level) if hit[0] in relevant}
    assert got == want, peer_says


def test_checkov_privileged_daemonset_reports_every_host_escape(shared_data: Path) -> None:
    path = shared_data / "checkov/tests/kubernetes/checks/example_ShareHost/privilegedDaemonSet-FAILED.yaml"
    got = _scan(path, BASELINE)
    assert {r for r, _, _ in got} == {"pss.privileged", "pss.host-namespaces", "pss.host-path-volumes"}
    assert {line for r, line, _ in got if r == "pss.host-namespaces"} == {
        _line(path, "hostNetwork: true"),
        _line(path, "hostIPC: true"),
        _line(path, "hostPID: true"),
    }


def test_kubesec_user_namespace_pod_is_exempt_from_root_checks(shared_data: Path) -> None:
    # kubesec rewards hostUsers: false; PSA (1.35+) exempts such pods from runAsNonRoot/runAsUser
    path = shared_data / "kubesec/test/asset/score-1-pod-hostUsers-set-to-false.yml"
    got = {r for r, _, _ in _scan(path, RESTRICTED)}
    assert not got & {"pss.run-as-non-root", "pss.run-as-user"}
    assert "pss.allow-privilege-escalation" in got  # the rest of restricted still applies


def test_kubesec_allow_privilege_escalation_deployment(shared_data: Path) -> None:
    path = shared_data / "kubesec/test/asset/allowPrivilegeEscalation.yaml"
    got = _scan(path, RESTRICTED)
    assert (
        "pss.allow-privilege-escalation",
        _line(path, "allowPrivilegeEscalation: true"),
        "teamcity-server",
    ) in got
    assert ("pss.restricted-volumes", _line(path, "hostPath:"), None) in got
    assert ("pss.host-path-volumes", _line(path, "hostPath:"), None) in _scan(path, BASELINE)
