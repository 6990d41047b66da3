"""Workload hardening rules (pack ``k8s``): which object, field, line and container each one reports.

Manifests go through the real Kubernetes source and the real evaluator, so line numbers are the
ones a user sees. Peer comparisons are in test_workload_checkov.py / _trivy.py / _peers.py.
"""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dutyguard.core.evaluate import evaluate
from dutyguard.core.model import Finding, Severity, render_path
from dutyguard.core.policy import Policy
from dutyguard.core.rule import RuleRegistry
from dutyguard.errors import InputError
from dutyguard.limits import DEFAULT_LIMITS
from dutyguard.rules import default_registry
from dutyguard.rules.workload import rules
from dutyguard.rules.workload.host import normalise_host_path
from dutyguard.sources.interface import InputFile
from dutyguard.sources.kubernetes import POD_SPEC_PATHS, K8sObject, KubernetesSource

SHA = "sha256:" + "b" * 64
REGISTRY = RuleRegistry(rules())


def load(text: str) -> list[K8sObject]:
    data = textwrap.dedent(text).encode()
    return list(KubernetesSource().load(InputFile(name="m.yaml", data=data, size=len(data)), DEFAULT_LIMITS))


def scan(text: str, rule_id: str | None = None, policy: Policy | None = None) -> list[Finding]:
    ev = evaluate(REGISTRY, policy or Policy(), load(text))
    assert not ev.errors, ev.errors
    return [f for f in ev.findings if rule_id is None or f.rule_id == rule_id]


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the n-th line containing ``needle``."""
    hits = [n for n, line in enumerate(textwrap.dedent(text).splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


def where(findings: Sequence[Finding]) -> list[tuple[str | None, int | None, str | None, str | None]]:
    return [(f.location.name, f.location.line, f.location.container, f.location.field) for f in findings]


def pod(containers: str, spec_extra: str = "", name: str = "p", namespace: str = "team") -> str:
    return (
        "apiVersion: v1\nkind: Pod\nmetadata:\n"
        f"  name: {name}\n  namespace: {namespace}\nspec:\n{textwrap.indent(textwrap.dedent(spec_extra), '  ')}"
        f"  containers:\n{textwrap.indent(textwrap.dedent(containers), '  ')}"
    )


# --- the rule set itself ---------------------------------------------------------------------------

CONTROL_PREFIXES = ("nist-800-190:", "cis-k8s:", "nsa:", "nist-800-53:")
PEERS = {"checkov", "trivy", "kubesec", "kube-score"}
# Peer ids whose check *is* a Pod Security Standards control: the pss.* rules carry them.
PSS_PEER_IDS = {
    *(f"CKV_K8S_{n}" for n in (1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 23, 24, 25, 26, 31, 32, 36, 37, 39)),
    *(f"KSV{n:03d}" for n in (1, 2, 3, 4, 5, 8, 9, 10, 12, 17, 22, 23, 24, 25, 26, 27, 28, 30)),
    *(f"KSV{n}" for n in (103, 104, 105, 106, 119, 120)),
}


def test_rule_metadata_is_complete() -> None:
    assert len(REGISTRY) == len(rules())  # no duplicate ids
    for rule in rules():
        m = rule.meta
        assert m.id.startswith("k8s."), m.id
        assert m.pack == "k8s", m.id
        assert rule.target is K8sObject
        assert m.controls, m.id
        assert all(c.startswith(CONTROL_PREFIXES) for c in m.controls), m.id
        assert set(m.equivalents) <= PEERS, m.id
        assert m.title
        assert m.description
        assert m.remediation


def test_no_pss_check_is_duplicated_here() -> None:
    claimed = {i for r in rules() for ids in r.meta.equivalents.values() for i in ids}
    assert not claimed & PSS_PEER_IDS


def test_registered_in_the_default_registry() -> None:
    registry = default_registry()
    for rule in rules():
        assert rule.meta.id in registry
    assert registry.translate("CKV_K8S_43") == ("k8s.image-not-pinned-by-digest",)
    assert registry.translate("ksv013") == ("k8s.image-tag-latest",)
    assert set(registry.translate("CKV_K8S_38")) == {
        "k8s.service-account-token-automount",
        "k8s.service-account-token-default-automount",
    }


# --- images ----------------------------------------------------------------------------------------

IMAGES = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  template:
    spec:
      initContainers:
        - name: init
          image: busybox
      containers:
        - name: app
          image: ghcr.io/acme/app:1.4.2@{sha}
        - name: proxy
          image: docker.io/envoyproxy/envoy:latest
        - name: tagged
          image: registry.acme.io:5000/team/tool:2.0
      ephemeralContainers:
        - name: debug
          image: ghcr.io.evil.com/acme/app:1
""".replace("{sha}", SHA)


def test_image_tag_latest_reports_each_container_at_its_image_line() -> None:
    found = scan(IMAGES, "k8s.image-tag-latest")
    assert where(found) == [
        ("web", line_of(IMAGES, "image: busybox"), "init", "spec.template.spec.initContainers[0].image"),
        ("web", line_of(IMAGES, "envoy:latest"), "proxy", "spec.template.spec.containers[1].image"),
    ]
    assert "docker.io/library/busybox" in found[0].message
    assert "no tag" in found[0].message


def test_image_not_pinned_by_digest() -> None:
    found = scan(IMAGES, "k8s.image-not-pinned-by-digest")
    assert [f.location.container for f in found] == ["init", "proxy", "tagged", "debug"]


def test_registry_allow_list_empty_reports_nothing() -> None:
    assert scan(IMAGES, "k8s.image-registry-not-allowed") == []


def test_registry_allow_list() -> None:
    policy = Policy(allowed_registries=("ghcr.io/acme", "registry.acme.io:5000"))
    found = scan(IMAGES, "k8s.image-registry-not-allowed", policy)
    assert [(f.location.container, f.location.line) for f in found] == [
        ("init", line_of(IMAGES, "image: busybox")),
        ("proxy", line_of(IMAGES, "envoy:latest")),
        ("debug", line_of(IMAGES, "ghcr.io.evil.com")),
    ]
    assert "implied" in found[0].message  # 'busybox' never named Docker Hub
    assert "ghcr.io.evil.com" in found[2].message
    assert all(f.severity is Severity.HIGH for f in found)


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io.evil.com/acme/app:1",  # host prefix
        "ghcr.io/acme-evil/app:1",  # repository prefix
        "evil.com/ghcr.io/acme/app:1",  # allowed name as a path
        "ghcr.io:8443/acme/app:1",  # same host, other port
        "GHCR.IO/acme/App:1",  # invalid (upper-case path): cannot be verified
        "ghcr.io/acme/app@sha256:1234",  # invalid digest: cannot be verified
        "ghcr.io/acme/app :1",  # whitespace
    ],
)
def test_image_reference_confusion_cannot_bypass_allow_list(image: str) -> None:
    text = pod(f"- name: c\n  image: {image!r}\n")
    found = scan(text, "k8s.image-registry-not-allowed", Policy(allowed_registries=("ghcr.io/acme",)))
    assert len(found) == 1
    assert found[0].location.field == "spec.containers[0].image"


def test_bad_allow_list_entry_fails_the_scan_naming_the_entry() -> None:
    objs = load(pod("- name: c\n  image: ghcr.io/acme/app:1\n"))
    ev = evaluate(REGISTRY, Policy(allowed_registries=("ghcr.io", "https://quay.io")), objs)
    assert len(ev.errors) == 1
    assert "https://quay.io" in ev.errors[0].message
    assert "k8s.image-registry-not-allowed" in ev.errors[0].message


@pytest.mark.parametrize("image", ["", "null", "42", "'Nginx:1'", "'nginx@sha256:123'", "{a: b}"])
def test_image_reference_invalid(image: str) -> None:
    text = pod(f"- name: c\n  image: {image}\n") if image else pod("- name: c\n")
    found = scan(text, "k8s.image-reference-invalid")
    assert len(found) == 1
    assert found[0].location.container == "c"
    assert found[0].location.field == "spec.containers[0].image"
    # the other image rules leave an unreadable reference to this one
    assert scan(text, "k8s.image-tag-latest") == scan(text, "k8s.image-not-pinned-by-digest") == []


def test_image_volumes_are_images_too() -> None:
    text = pod(
        f"- name: c\n  image: ghcr.io/acme/app:1@{SHA}\n",
        "volumes:\n  - name: models\n    image:\n      reference: quay.io/ml/model:latest\n      pullPolicy: IfNotPresent\n",
    )
    policy = Policy(allowed_registries=("ghcr.io/acme",))
    expected = {
        "k8s.image-registry-not-allowed": ("spec.volumes[0].image.reference", line_of(text, "reference:")),
        "k8s.image-tag-latest": ("spec.volumes[0].image.reference", line_of(text, "reference:")),
        "k8s.image-not-pinned-by-digest": ("spec.volumes[0].image.reference", line_of(text, "reference:")),
        "k8s.image-pull-policy-not-always": (
            "spec.volumes[0].image.pullPolicy",
            line_of(text, "pullPolicy:"),
        ),
    }
    for rule_id, (field, line) in expected.items():
        found = scan(text, rule_id, policy)
        assert [(f.location.field, f.location.line, f.location.container) for f in found] == [
            (field, line, None)
        ]
        assert "image volume 'models'" in found[0].message


@pytest.mark.parametrize(
    ("image", "policy", "reported"),
    [
        ("nginx:1.25", None, True),  # default IfNotPresent for a fixed tag
        ("nginx:1.25", "IfNotPresent", True),
        ("nginx:1.25", "Never", True),
        ("nginx:1.25", "Always", False),
        ("nginx", None, False),  # default Always for latest / no tag
        ("nginx:latest", None, False),
        (f"nginx@{SHA}", None, False),  # pinned: content cannot change
        (f"nginx@{SHA}", "IfNotPresent", True),
        ("nginx:1.25", "always", True),  # not a policy the API knows
        ("nginx:1.25", "[Always]", True),
    ],
)
def test_image_pull_policy(image: str, policy: str | None, reported: bool) -> None:
    extra = f"  imagePullPolicy: {policy}\n" if policy else ""
    text = pod(f"- name: c\n  image: '{image}'\n{extra}")
    found = scan(text, "k8s.image-pull-policy-not-always")
    assert bool(found) is reported
    if found:
        assert found[0].location.field == "spec.containers[0].imagePullPolicy"


# --- host paths ------------------------------------------------------------------------------------


def _volumes(*paths: str) -> str:
    vols = "".join(f"  - name: v{i}\n    hostPath:\n      path: {p!r}\n" for i, p in enumerate(paths))
    return "volumes:\n" + vols


@pytest.mark.parametrize(
    ("path", "runtime"),
    [
        ("/var/run/docker.sock", "Docker"),
        ("/run/docker.sock", "Docker"),
        ("/run/containerd/containerd.sock", "containerd"),
        ("/var/run/crio/crio.sock", "CRI-O"),
        ("/run/k3s/containerd/containerd.sock", "containerd (k3s)"),
        ("/var/run", "Docker"),  # the directory holding the socket
        ("/run", "Docker"),
        ("/run/containerd", "containerd"),
        ("//var/run/../run/./docker.sock/", "Docker"),  # normalised before comparison
        ("var/run/docker.sock", "Docker"),  # relative: read from /
        ("/srv/docker.sock", "Docker"),  # a socket moved elsewhere
        ("/run/buildkit/buildkitd.sock", "BuildKit"),
    ],
)
def test_runtime_socket_mount(path: str, runtime: str) -> None:
    text = pod("- name: c\n  image: a.io/x:1\n", _volumes("/data", path))
    found = scan(text, "k8s.runtime-socket-mount")
    assert len(found) == 1, found
    assert found[0].severity is Severity.CRITICAL
    assert found[0].location.field == "spec.volumes[1].hostPath.path"
    assert found[0].location.line == line_of(text, "path: ", 2)
    assert f"the {runtime} API socket" in found[0].message


@pytest.mark.parametrize("path", ["/var/run/app", "/run/secrets-store", "/data", "/var/log", "/var", "/"])
def test_other_host_paths_are_not_runtime_sockets(path: str) -> None:
    assert scan(pod("- name: c\n  image: a.io/x:1\n", _volumes(path)), "k8s.runtime-socket-mount") == []


def test_persistent_volume_host_path() -> None:
    text = "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: pv\nspec:\n  hostPath:\n    path: /var/run/docker.sock\n"
    found = scan(text, "k8s.runtime-socket-mount")
    assert where(found) == [("pv", 7, None, "spec.hostPath.path")]


@pytest.mark.parametrize(
    ("path", "tree"),
    [
        ("/", "/"),
        ("/etc", "/etc"),
        ("/etc/kubernetes/pki", "/etc/kubernetes"),
        ("/var/lib/kubelet/pods", "/var/lib/kubelet"),
        ("/var/lib/docker/containers", "/var/lib/docker"),
        ("/proc/sys/kernel", "/proc/sys"),
        ("/sys/fs/cgroup", "/sys/fs/cgroup"),
        ("/root/.ssh", "/root"),
        ("/etc/../etc/shadow", "/etc/shadow"),
        ("/opt/cni/bin", "/opt/cni"),
    ],
)
def test_sensitive_host_path(path: str, tree: str) -> None:
    found = scan(pod("- name: c\n  image: a.io/x:1\n", _volumes(path)), "k8s.sensitive-host-path")
    assert len(found) == 1
    assert found[0].location.field == "spec.volumes[0].hostPath.path"
    assert repr(path) in found[0].message
    assert (f"inside {tree}" in found[0].message) is (tree != normalise_host_path(path))


@pytest.mark.parametrize(
    "path", ["/etc/localtime", "/var/log", "/data/app", "/dev/disk", "/run/log/journal", "/opt/app"]
)
def test_ordinary_host_paths_are_not_sensitive(path: str) -> None:
    assert scan(pod("- name: c\n  image: a.io/x:1\n", _volumes(path)), "k8s.sensitive-host-path") == []


def test_unreadable_host_path_fails_closed() -> None:
    text = pod("- name: c\n  image: a.io/x:1\n", "volumes:\n  - name: v\n    hostPath:\n      path: [/]\n")
    found = scan(text, "k8s.sensitive-host-path")
    assert len(found) == 1
    assert "not a string" in found[0].message


# --- security context ------------------------------------------------------------------------------


def test_writable_root_filesystem() -> None:
    text = pod(
        """\
        - name: ro
          image: a.io/x:1
          securityContext:
            readOnlyRootFilesystem: true
        - name: disabled
          image: a.io/x:1
          securityContext:
            readOnlyRootFilesystem: false
        - name: unset
          image: a.io/x:1
        - name: text
          image: a.io/x:1
          securityContext:
            readOnlyRootFilesystem: "true"
        - name: broken
          image: a.io/x:1
          securityContext: [readOnlyRootFilesystem]
        """
    )
    found = scan(text, "k8s.writable-root-filesystem")
    assert [(f.location.container, f.location.line) for f in found] == [
        ("disabled", line_of(text, "readOnlyRootFilesystem: false")),
        ("unset", line_of(text, "name: unset")),  # missing field: the closest existing parent
        ("text", line_of(text, 'readOnlyRootFilesystem: "true"')),
        ("broken", line_of(text, "securityContext: [")),
    ]
    assert "not set" in found[1].message
    assert "not a mapping" in found[3].message


def test_windows_pods_skip_linux_only_settings() -> None:
    text = pod("- name: c\n  image: a.io/x:1\n", "os:\n  name: windows\n")
    for rule_id in ("k8s.writable-root-filesystem", "k8s.net-raw-not-dropped", "k8s.low-uid", "k8s.low-gid"):
        assert scan(text, rule_id) == [], rule_id
    assert scan(text, "k8s.no-memory-limit")  # not Linux-specific


@pytest.mark.parametrize(
    ("drop", "reported"),
    [
        ("[ALL]", False),
        ("[all]", False),  # the runtime upper-cases capability names
        ("[NET_RAW]", False),
        ("[CAP_NET_RAW]", False),
        ("[net_raw, CHOWN]", False),
        ("[CHOWN]", True),
        ("[]", True),
        ("null", True),
        ("NET_RAW", True),  # a string, not a list: cannot be read, so not dropped
    ],
)
def test_net_raw_not_dropped(drop: str, reported: bool) -> None:
    text = pod(f"- name: c\n  image: a.io/x:1\n  securityContext:\n    capabilities:\n      drop: {drop}\n")
    found = scan(text, "k8s.net-raw-not-dropped")
    assert bool(found) is reported
    if found:
        assert found[0].location.field == "spec.containers[0].securityContext.capabilities.drop"
        assert found[0].location.line == line_of(text, "drop:")


def test_low_uid_follows_pod_and_container_precedence() -> None:
    text = pod(
        """\
        - name: inherits
          image: a.io/x:1
        - name: overrides-low
          image: a.io/x:1
          securityContext:
            runAsUser: 1000
        - name: overrides-high
          image: a.io/x:1
          securityContext:
            runAsUser: 10000
        """,
        "securityContext:\n  runAsUser: 20000\n",
    )
    found = scan(text, "k8s.low-uid")
    assert [(f.location.container, f.location.line) for f in found] == [
        ("overrides-low", line_of(text, "runAsUser: 1000")),
    ]


@pytest.mark.parametrize(
    ("pod_ctx", "container_ctx", "reported"),
    [
        ("", "", True),
        ("runAsUser: 0", "", True),
        ("runAsUser: 9999", "", True),
        ("runAsUser: 10000", "", False),
        ("", "runAsUser: 65534", False),
        ("runAsUser: 65534", "runAsUser: 0", True),
        ("runAsUser: true", "", True),  # a boolean is not a UID
        ("runAsUser: '20000'", "", True),  # nor is a string
    ],
)
def test_low_uid(pod_ctx: str, container_ctx: str, reported: bool) -> None:
    spec = f"securityContext:\n  {pod_ctx}\n" if pod_ctx else ""
    container = "- name: c\n  image: a.io/x:1\n" + (
        f"  securityContext:\n    {container_ctx}\n" if container_ctx else ""
    )
    assert bool(scan(pod(container, spec), "k8s.low-uid")) is reported


def test_user_namespaces_make_uids_irrelevant() -> None:
    text = pod("- name: c\n  image: a.io/x:1\n", "hostUsers: false\n")
    assert scan(text, "k8s.low-uid") == scan(text, "k8s.low-gid") == []
    assert scan(pod("- name: c\n  image: a.io/x:1\n", "hostUsers: true\n"), "k8s.low-uid")


def test_low_gid() -> None:
    text = pod("- name: c\n  image: a.io/x:1\n  securityContext:\n    runAsGroup: 3000\n")
    found = scan(text, "k8s.low-gid")
    assert len(found) == 1
    assert found[0].location.line == line_of(text, "runAsGroup: 3000")
    assert (
        scan(pod("- name: c\n  image: a.io/x:1\n", "securityContext:\n  runAsGroup: 30000\n"), "k8s.low-gid")
        == []
    )


def test_root_group() -> None:
    text = pod(
        "- name: c\n  image: a.io/x:1\n  securityContext:\n    runAsGroup: 0\n",
        "securityContext:\n  fsGroup: 0\n  supplementalGroups: [5, 0]\n  runAsGroup: 1\n",
    )
    found = scan(text, "k8s.root-group")
    assert [f.location.field for f in found] == [
        "spec.securityContext.fsGroup",
        "spec.securityContext.supplementalGroups[1]",
        "spec.containers[0].securityContext.runAsGroup",
    ]
    assert found[2].location.container == "c"


def test_security_context_missing() -> None:
    text = pod(
        "- name: a\n  image: a.io/x:1\n  securityContext: {}\n- name: b\n  image: a.io/x:1\n  securityContext:\n    runAsUser: 20000\n",
        "securityContext: {}\n",
    )
    assert where(scan(text, "k8s.pod-security-context-missing")) == [
        ("p", line_of(text, "  securityContext: {}"), None, "spec.securityContext")
    ]
    assert [f.location.container for f in scan(text, "k8s.container-security-context-missing")] == ["a"]


# --- resources -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "reported"),
    [
        ("cpu: 500m", False),
        ("cpu: 1", False),
        ("cpu: 0.5", False),
        ("cpu: '2e3'", False),
        ("cpu: '2e3m'", True),  # exponent and suffix together: not a quantity
        ("cpu: 0", True),  # zero means unlimited
        ("cpu: '0m'", True),
        ("cpu: '-1'", True),
        ("cpu: lots", True),
        ("cpu: [1]", True),
        ("memory: 1Gi", True),  # no cpu key
    ],
)
def test_cpu_limit(limits: str, reported: bool) -> None:
    text = pod(f"- name: c\n  image: a.io/x:1\n  resources:\n    limits:\n      {limits}\n")
    found = scan(text, "k8s.no-cpu-limit")
    assert bool(found) is reported
    if found:
        assert found[0].location.field == "spec.containers[0].resources.limits.cpu"


def test_missing_request_defaults_to_the_limit() -> None:
    # The API server copies limits into missing requests; a malformed requests block is not defaulted.
    only_limits = pod("- name: c\n  image: a.io/x:1\n  resources:\n    limits: {cpu: 1, memory: 1Gi}\n")
    assert scan(only_limits, "k8s.no-cpu-request") == scan(only_limits, "k8s.no-memory-request") == []
    broken = pod("- name: c\n  image: a.io/x:1\n  resources:\n    limits: {cpu: 1}\n    requests: [cpu]\n")
    assert [f.location.field for f in scan(broken, "k8s.no-cpu-request")] == [
        "spec.containers[0].resources.requests.cpu"
    ]


def test_resource_rules_cover_init_but_not_ephemeral_containers() -> None:
    text = pod(
        "- name: app\n  image: a.io/x:1\n  resources:\n    limits: {cpu: 1, memory: 1Gi}\n    requests: {cpu: 1, memory: 1Gi}\n",
        "initContainers:\n  - name: init\n    image: a.io/x:1\nephemeralContainers:\n  - name: debug\n    image: a.io/x:1\n",
    )
    for rule_id in ("k8s.no-cpu-limit", "k8s.no-memory-limit", "k8s.no-cpu-request", "k8s.no-memory-request"):
        assert [f.location.container for f in scan(text, rule_id)] == ["init"], rule_id
    assert {f.severity for f in scan(text) if "request" in f.rule_id} == {Severity.INFO}


# --- service account tokens ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "explicit", "default"),
    [
        ("true", True, False),
        ("false", False, False),
        (None, False, True),
        ("'false'", True, False),  # a string is not false: taken as mounted
        ("null", False, True),
    ],
)
def test_service_account_token(value: str | None, explicit: bool, default: bool) -> None:
    spec = f"automountServiceAccountToken: {value}\n" if value is not None else ""
    text = pod("- name: c\n  image: a.io/x:1\n", spec)
    assert bool(scan(text, "k8s.service-account-token-automount")) is explicit
    assert bool(scan(text, "k8s.service-account-token-default-automount")) is default
    for f in scan(text):
        if f.rule_id.startswith("k8s.service-account-token"):
            assert f.location.field == "spec.automountServiceAccountToken"


def test_default_service_account_automount() -> None:
    sa = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {name}\n  namespace: team\n{extra}"
    assert scan(sa.format(name="default", extra=""), "k8s.default-service-account-automount")
    assert scan(
        sa.format(name="default", extra="automountServiceAccountToken: true\n"),
        "k8s.default-service-account-automount",
    )
    assert not scan(
        sa.format(name="default", extra="automountServiceAccountToken: false\n"),
        "k8s.default-service-account-automount",
    )
    assert not scan(sa.format(name="app", extra=""), "k8s.default-service-account-automount")


# --- credentials -----------------------------------------------------------------------------------

SECRET = "s3cr3t-Value-XYZ"


@pytest.mark.parametrize(
    ("name", "value", "reported"),
    [
        ("DB_PASSWORD", SECRET, True),
        ("dbPassword", SECRET, True),
        ("spring.datasource.password", SECRET, True),
        ("API_KEY", SECRET, True),
        ("AWS_SECRET_ACCESS_KEY", SECRET, True),
        ("GITHUB_TOKEN", SECRET, True),
        ("clientSecret", SECRET, True),
        ("AZURE_STORAGE_CONNECTION_STRING", SECRET, True),
        ("dbpassword", SECRET, True),  # no separators
        ("DB_PASS", SECRET, True),
        ("PIN_PASSWORD", 1234, True),  # a number is still a secret
        ("DB_PASSWORD", "", False),
        ("DB_PASSWORD", "$(DB_PASSWORD_FROM_SECRET)", False),  # Kubernetes expansion
        ("DB_PASSWORD", "${DB_PASSWORD}", False),
        ("DB_PASSWORD", "{{ .Values.password }}", False),
        ("DB_PASSWORD", "vault:secret/data/db#password", False),  # resolved by an injector
        ("DB_PASSWORD", "arn:aws:secretsmanager:eu-west-1:1:secret:db", False),
        ("DB_PASSWORD", "/run/secrets/db", False),  # a path to the secret, not the secret
        ("PASSWORD_FILE", SECRET, False),  # describes where the secret is
        ("TOKEN_URL", SECRET, False),
        ("SECRET_NAME", SECRET, False),
        ("AWS_ACCESS_KEY_ID", SECRET, False),
        ("PASSWORD_AUTH", "true", False),
        ("BYPASS_CACHE", SECRET, False),
        ("TOKENIZER_MODEL", SECRET, False),
        ("CACHE_KEY", SECRET, False),
        ("LOG_LEVEL", SECRET, False),
    ],
)
def test_secret_in_env(name: str, value: object, reported: bool) -> None:
    v = repr(value) if isinstance(value, str) else value
    text = pod(f"- name: c\n  image: a.io/x:1\n  env:\n    - name: {name}\n      value: {v}\n")
    found = scan(text, "k8s.secret-in-env")
    assert bool(found) is reported
    if found:
        assert where(found) == [("p", line_of(text, "value:"), "c", "spec.containers[0].env[0].value")]
        assert name in found[0].message


def test_secret_value_never_in_output() -> None:
    text = pod(
        f"- name: c\n  image: a.io/x:1\n  args: ['--db-password={SECRET}', '--verbose=true']\n"
        f"  env:\n    - name: API_TOKEN\n      value: {SECRET}\n"
    )
    found = scan(text, "k8s.secret-in-env")
    assert [f.location.field for f in found] == [
        "spec.containers[0].env[0].value",
        "spec.containers[0].args[0]",
    ]
    for f in found:
        assert SECRET not in repr(f)
        assert SECRET[:6] not in repr(f)


def test_secret_ref_in_env() -> None:
    text = pod(
        "- name: c\n  image: a.io/x:1\n  env:\n    - name: A\n      value: x\n    - name: DB\n      valueFrom:\n"
        "        secretKeyRef: {name: db, key: password}\n  envFrom:\n    - configMapRef: {name: cfg}\n    - secretRef: {name: all}\n"
    )
    found = scan(text, "k8s.secret-ref-in-env")
    assert [(f.location.field, f.location.line) for f in found] == [
        ("spec.containers[0].env[1].valueFrom.secretKeyRef", line_of(text, "secretKeyRef")),
        ("spec.containers[0].envFrom[1].secretRef", line_of(text, "secretRef: {name: all}")),
    ]


CONFIGMAP = f"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  namespace: team
data:
  password: {SECRET}
  app.properties: |
    url=jdbc:postgresql://db/app
    spring.datasource.password={SECRET}
    token.ttl=300
  config.yaml: |
    database:
      password: "{SECRET}"
      password_file: /run/secrets/db
  env: |
    export API_KEY={SECRET}
    DB_PASSWORD=${{DB_PASSWORD}}
    REDIS_PASSWORD=
  tokenizer: bert
"""


def test_secret_in_configmap() -> None:
    found = scan(CONFIGMAP, "k8s.secret-in-configmap")
    assert [(f.location.field, f.location.line) for f in found] == [
        ("data.password", line_of(CONFIGMAP, "  password: s3cr")),
        ("data.app.properties", line_of(CONFIGMAP, "app.properties:")),
        ("data.config.yaml", line_of(CONFIGMAP, "config.yaml:")),
        ("data.env", line_of(CONFIGMAP, "  env: |")),
    ]
    assert "line 2" in found[1].message
    assert "spring.datasource.password" in found[1].message
    assert all(SECRET not in repr(f) for f in found)
    assert len({f.fingerprint for f in found}) == 4


# --- placement ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name", "namespace", "default", "system"),
    [
        ("Deployment", "web", "default", True, False),
        ("Service", "web", "default", True, False),
        ("ConfigMap", "cfg", "kube-system", False, True),
        ("Pod", "p", "kube-public", False, True),
        ("Pod", "p", None, False, False),  # decided where it is applied
        ("Pod", "p", "team", False, False),
        ("ClusterRole", "r", "default", False, False),  # cluster-scoped: the namespace is ignored
        ("Service", "kubernetes", "default", False, False),  # the control plane's own
        ("ServiceAccount", "default", "default", False, False),
        # governance of the namespace must live in it: a default-deny policy in 'default' is good
        ("NetworkPolicy", "deny-all", "default", False, False),
        ("RoleBinding", "metrics-reader", "kube-system", False, False),
        ("ResourceQuota", "q", "kube-public", False, False),
    ],
)
def test_namespaces(kind: str, name: str, namespace: str | None, default: bool, system: bool) -> None:
    ns = f"  namespace: {namespace}\n" if namespace else ""
    text = f"apiVersion: v1\nkind: {kind}\nmetadata:\n  name: {name}\n{ns}"
    d = scan(text, "k8s.default-namespace")
    s = scan(text, "k8s.system-namespace")
    assert (bool(d), bool(s)) == (default, system)
    for f in d + s:
        assert (f.location.field, f.location.line) == ("metadata.namespace", 5)


def test_control_plane_labels_do_not_exempt_from_kube_system() -> None:
    # Trivy exempts objects labelled as control-plane components; labels are chosen by the author
    # of the manifest, so here they exempt nothing (Security grants exceptions, not the author).
    text = pod(
        "- name: c\n  image: a.io/x:1\n",
        "priorityClassName: system-node-critical\n",
        namespace="kube-system",
    ).replace("metadata:\n", "metadata:\n  labels: {tier: control-plane, component: etcd}\n")
    assert scan(text, "k8s.system-namespace")


# --- known-dangerous software ----------------------------------------------------------------------


def test_tiller() -> None:
    text = pod("- name: t\n  image: ghcr.io/helm/tiller:v2.16.0\n- name: d\n  image: a.io/distiller:1\n")
    assert [f.location.container for f in scan(text, "k8s.tiller-deployed")] == ["t"]
    labelled = pod("- name: x\n  image: a.io/x:1\n").replace(
        "metadata:\n", "metadata:\n  labels: {app: helm, name: tiller}\n"
    )
    assert where(scan(labelled, "k8s.tiller-deployed")) == [("p", 4, None, "metadata.labels")]
    svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: tiller-deploy\nspec:\n  selector: {app: helm, name: tiller}\n"
    assert [f.location.field for f in scan(svc, "k8s.tiller-deployed")] == ["spec.selector"]
    assert not scan(pod("- name: x\n  image: a.io/x:1\n", name="tiller-like"), "k8s.tiller-deployed")


def test_kubernetes_dashboard() -> None:
    assert scan(pod("- name: d\n  image: kubernetesui/dashboard:v2.7.0\n"), "k8s.kubernetes-dashboard")
    assert scan(
        pod("- name: d\n  image: k8s.gcr.io/kubernetes-dashboard-amd64:v1.10.1\n"), "k8s.kubernetes-dashboard"
    )
    assert not scan(pod("- name: d\n  image: grafana/grafana:10\n"), "k8s.kubernetes-dashboard")


def test_git_sync_exec_override() -> None:
    text = pod(
        "- name: sync\n  image: registry.k8s.io/git-sync/git-sync:v4.2.1\n  args: ['--repo=https://x', '--git-config=core.sshCommand:sh']\n"
        "  env:\n    - {name: GITSYNC_REPO, value: 'https://x'}\n    - {name: GITSYNC_GIT, value: /tmp/payload}\n"
    )
    found = scan(text, "k8s.git-sync-exec-override")
    assert [f.location.field for f in found] == [
        "spec.containers[0].env[1].name",
        "spec.containers[0].args[1]",
    ]
    other = pod("- name: app\n  image: a.io/app:1\n  args: ['--git=/usr/bin/git']\n")
    assert not scan(other, "k8s.git-sync-exec-override")  # --git means nothing to other programs


# --- cluster objects ---------------------------------------------------------------------------------


def test_service_external_ips() -> None:
    svc = (
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: t\nspec:\n  externalIPs: [{ips}]\n"
    )
    found = scan(svc.format(ips="203.0.113.7"), "k8s.service-external-ips")
    assert where(found) == [("s", 7, None, "spec.externalIPs")]
    assert not scan(svc.format(ips=""), "k8s.service-external-ips")


def test_gatekeeper_allowed_repos_open_prefix() -> None:
    text = (
        "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sAllowedRepos\nmetadata:\n  name: repos\nspec:\n"
        "  parameters:\n    repos:\n      - gcr.io\n      - ghcr.io/acme\n      - ghcr.io/acme/\n      - quay.io/acme/app:1.2\n"
        "      - docker.io/library/\n      - 42\n"
    )
    found = scan(text, "k8s.gatekeeper-allowed-repos-open-prefix")
    assert [(f.location.field, f.location.line) for f in found] == [
        ("spec.parameters.repos[0]", 8),
        ("spec.parameters.repos[1]", 9),
        ("spec.parameters.repos[5]", 13),
    ]


# --- fail closed, no side effects --------------------------------------------------------------------


MALFORMED = [
    ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec: [a]\n", "spec"),
    ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n", "spec"),
    (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: {name: c, image: x}\n",
        "spec.containers",
    ),
    ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: []\n", "spec.containers"),
    ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: [c]\n", "spec.containers[0]"),
    ("apiVersion: v1\nkind: Pod\nmetadata: [p]\nspec:\n  containers: [{name: c}]\n", "metadata"),
    (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: [{image: x}]\n",
        "spec.containers[0].name",
    ),
    (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: [{name: off}]\n",
        "spec.containers[0].name",
    ),
    (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: [{name: c, env: {A: b}}]\n",
        "spec.containers[0].env",
    ),
    (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n"
        "  containers: [{name: c, securityContext: {capabilities: {drop: ALL}}}]\n",
        "spec.containers[0].securityContext.capabilities.drop",
    ),
    (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: [{name: c, resources: {limits: [1]}}]\n",
        "spec.containers[0].resources.limits",
    ),
    (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: [{name: c}]\n  volumes: {}\n",
        "spec.volumes",
    ),
]


@pytest.mark.parametrize(("text", "field"), MALFORMED)
def test_malformed_containers_cannot_hide_a_container(text: str, field: str) -> None:
    """Through the real source: either the file is refused (InputError) or this rule reports the field."""
    try:
        objs = load(text)
    except InputError as e:
        refused: InputError | None = e
    else:
        refused = None
    if refused is not None:
        assert "m.yaml" in refused.diagnostics()
        return
    found = [f for f in evaluate(REGISTRY, Policy(), objs).findings if f.rule_id == "k8s.workload-malformed"]
    assert field in [f.location.field for f in found]
    assert all(f.severity is Severity.HIGH for f in found)


@pytest.mark.parametrize(("text", "field"), MALFORMED)
def test_malformed_rule_reports_without_relying_on_the_source(text: str, field: str) -> None:
    # Objects can be built without the file source's shape check (an AdmissionReview body, a future
    # source): the rule must still report, not skip.
    import yaml

    obj = K8sObject(file="m.yaml", doc=yaml.safe_load(text))
    found = list(REGISTRY.get("k8s.workload-malformed").check(obj, Policy()))
    assert field in [render_path(v.path) for v in found]


def test_well_formed_workload_is_not_malformed() -> None:
    assert scan(IMAGES, "k8s.workload-malformed") == []
    assert scan(CONFIGMAP, "k8s.workload-malformed") == []


HARDENED = f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hardened
  namespace: shop
spec:
  template:
    spec:
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        fsGroup: 10001
        seccompProfile: {{type: RuntimeDefault}}
      containers:
        - name: app
          image: ghcr.io/acme/app:1.4.2@{SHA}
          imagePullPolicy: Always
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {{drop: [ALL]}}
          resources:
            limits: {{cpu: 500m, memory: 256Mi}}
            requests: {{cpu: 100m, memory: 128Mi}}
          env:
            - name: DB_PASSWORD
              valueFrom:
                secretKeyRef: {{name: db, key: password}}
          volumeMounts:
            - {{name: tmp, mountPath: /tmp}}
      volumes:
        - {{name: tmp, emptyDir: {{}}}}
"""


def test_hardened_workload_only_reports_the_deliberate_tradeoff() -> None:
    found = scan(HARDENED, policy=Policy(allowed_registries=("ghcr.io/acme",)))
    assert [f.rule_id for f in found] == ["k8s.secret-ref-in-env"]


def test_rules_do_not_mutate_and_are_repeatable() -> None:
    objs = load(IMAGES) + load(HARDENED) + load(CONFIGMAP)
    before = [copy.deepcopy(o.doc) for o in objs]
    policy = Policy(allowed_registries=("ghcr.io",))
    first = [[v for r in rules() for v in r.check(o, policy)] for o in objs]
    second = [[v for r in rules() for v in r.check(o, policy)] for o in objs]
    assert first == second
    assert [o.doc for o in objs] == before


def test_rules_are_safe_to_run_concurrently() -> None:
    objs = load(IMAGES) * 20
    policy = Policy(allowed_registries=("ghcr.io",))
    expected = [sorted(f.fingerprint for f in evaluate(REGISTRY, policy, [o]).findings) for o in objs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(
            pool.map(lambda o: sorted(f.fingerprint for f in evaluate(REGISTRY, policy, [o]).findings), objs)
        )
    assert got == expected


def test_suppression_annotations_are_not_honoured() -> None:
    plain = pod("- name: c\n  image: nginx:latest\n")
    annotated = plain.replace(
        "metadata:\n",
        "metadata:\n  annotations:\n    checkov.io/skip1: CKV_K8S_14=accepted\n    trivy.ignore: KSV013\n",
    )
    assert [f.rule_id for f in scan(annotated)] == [f.rule_id for f in scan(plain)]
    assert scan(annotated, "k8s.image-tag-latest")


# Keys the rules read, so that random documents reach deep into the code paths.
_KEYS = st.sampled_from(
    ["spec", "template", "jobTemplate", "containers", "initContainers", "ephemeralContainers", "volumes",
     "securityContext", "runAsUser", "runAsGroup", "fsGroup", "supplementalGroups", "capabilities", "drop",
     "add", "readOnlyRootFilesystem", "image", "imagePullPolicy", "resources", "limits", "requests", "cpu",
     "memory", "env", "envFrom", "name", "value", "valueFrom", "secretKeyRef", "secretRef", "args", "command",
     "hostPath", "path", "automountServiceAccountToken", "hostUsers", "os", "metadata", "labels", "namespace",
     "data", "externalIPs", "parameters", "repos", "selector", "reference", "pullPolicy"]
)  # fmt: skip
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True), st.text(max_size=40),
    st.sampled_from(["/var/run/docker.sock", "nginx:latest", "ALL", "0", "DB_PASSWORD", "default", "kube-system"]),
)  # fmt: skip
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_KEYS, inner, max_size=6)),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(
        [*POD_SPEC_PATHS, "Service", "ConfigMap", "ServiceAccount", "K8sAllowedRepos", "PersistentVolume"]
    ),
    body=st.dictionaries(_KEYS, _JSON, max_size=6),
)
def test_no_rule_raises_on_hostile_structure(kind: str, body: dict[str, object]) -> None:
    doc = {"apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": kind, **body}
    obj = K8sObject(file="fuzz.yaml", doc=doc)
    policy = Policy(allowed_registries=("ghcr.io/acme",))
    for rule in rules():
        for v in rule.check(obj, policy):
            assert isinstance(v.message, str)
            assert v.message
