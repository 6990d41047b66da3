"""Pod Security Standards rules: our own table of cases per PSA check, at both levels.

Each case states the exact (rule id, offending field) pairs reported at baseline and at restricted.
Pods are built from a spec that passes every restricted check, so a case shows only what it changes.
The facts behind the expectations are pod-security-admission's ``policy/check_*.go`` at its latest
policy version (see ``dutyguard.rules.pss_common``).
"""

from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.rules import pss
from dutyguard.rules.pss_common import SAFE_SYSCTLS, rule_id
from dutyguard.sources.kubernetes import K8sObject
from tests.conftest import make_scanner
from tests.rules.pss_support import (
    BASELINE,
    REGISTRY,
    RESTRICTED,
    container,
    findings,
    hits,
    pod,
    rule_hits,
    spec,
)

C0 = "spec.containers[0]"
SC0 = f"{C0}.securityContext"
PSC = "spec.securityContext"
AA = "container.apparmor.security.beta.kubernetes.io/"

PSA_CHECK_IDS = {
    "pss-baseline": {
        "privileged",
        "hostNamespaces",
        "hostPathVolumes",
        "hostPorts",
        "hostProbesAndHostLifecycle",
        "appArmorProfile",
        "seLinuxOptions",
        "procMount",
        "seccompProfile_baseline",
        "sysctls",
        "windowsHostProcess",
        "capabilities_baseline",
    },
    "pss-restricted": {
        "procMount_restricted",
        "seccompProfile_restricted",
        "capabilities_restricted",
        "restrictedVolumes",
        "allowPrivilegeEscalation",
        "runAsNonRoot",
        "runAsUser",
    },
}

# PSA's OverrideCheckIDs: at restricted the baseline check is replaced by the restricted one.
OVERRIDES = {
    "pss.capabilities-baseline": "pss.capabilities-restricted",
    "pss.seccomp-profile-baseline": "pss.seccomp-profile-restricted",
    "pss.host-path-volumes": "pss.restricted-volumes",
    "pss.proc-mount": "pss.proc-mount-restricted",
}


def sc(**fields: Any) -> dict[str, Any]:
    """A container whose securityContext also has ``fields``."""
    return container(securityContext=fields)


def bare_spec(**fields: Any) -> dict[str, Any]:
    """A pod spec with nothing set: it passes baseline, fails most of restricted."""
    return {"containers": [{"name": "app", "image": "registry.example/app:1.0"}], **fields}


def p(pod_spec: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return pod(pod_spec, **kw)


NONE: set[tuple[str, str]] = set()

ALL_VOLUME_TYPES = [
    {"name": "a", "configMap": {"name": "cm"}},
    {"name": "b", "csi": {"driver": "x"}},
    {"name": "c", "downwardAPI": {}},
    {"name": "d", "emptyDir": {}},
    {"name": "e", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
    {"name": "f", "image": {"reference": "registry.example/data:1"}},
    {"name": "g", "persistentVolumeClaim": {"claimName": "c"}},
    {"name": "h", "projected": {"sources": []}},
    {"name": "i", "secret": {"secretName": "s"}},
]

CASES: list[tuple[str, dict[str, Any], set[tuple[str, str]], set[tuple[str, str]]]] = [
    # --- the clean pod -----------------------------------------------------------------------
    ("restricted-clean", p(spec()), NONE, NONE),
    # --- privileged ----------------------------------------------------------------------------
    (
        "privileged-true",
        p(spec(sc(privileged=True))),
        {("pss.privileged", f"{SC0}.privileged")},
        {("pss.privileged", f"{SC0}.privileged")},
    ),
    (
        "privileged-init-container",
        p(spec(initContainers=[container("init", securityContext={"privileged": True})])),
        {("pss.privileged", "spec.initContainers[0].securityContext.privileged")},
        {("pss.privileged", "spec.initContainers[0].securityContext.privileged")},
    ),
    (
        "privileged-ephemeral-container",
        p(spec(ephemeralContainers=[container("debug", securityContext={"privileged": True})])),
        {("pss.privileged", "spec.ephemeralContainers[0].securityContext.privileged")},
        {("pss.privileged", "spec.ephemeralContainers[0].securityContext.privileged")},
    ),
    ("privileged-false", p(spec(sc(privileged=False))), NONE, NONE),
    ("privileged-null", p(spec(sc(privileged=None))), NONE, NONE),
    (
        "privileged-string-true",
        p(spec(sc(privileged="true"))),
        {("pss.privileged", f"{SC0}.privileged")},
        {("pss.privileged", f"{SC0}.privileged")},
    ),
    # fail closed: only the boolean false (or nothing) is allowed, not a string that looks like it
    (
        "privileged-string-false",
        p(spec(sc(privileged="false"))),
        {("pss.privileged", f"{SC0}.privileged")},
        {("pss.privileged", f"{SC0}.privileged")},
    ),
    # --- host namespaces -----------------------------------------------------------------------
    (
        "host-network",
        p(spec(hostNetwork=True)),
        {("pss.host-namespaces", "spec.hostNetwork")},
        {("pss.host-namespaces", "spec.hostNetwork")},
    ),
    (
        "host-pid-and-ipc",
        p(spec(hostPID=True, hostIPC=True)),
        {("pss.host-namespaces", "spec.hostPID"), ("pss.host-namespaces", "spec.hostIPC")},
        {("pss.host-namespaces", "spec.hostPID"), ("pss.host-namespaces", "spec.hostIPC")},
    ),
    (
        "host-ipc-string",
        p(spec(hostIPC="yes")),
        {("pss.host-namespaces", "spec.hostIPC")},
        {("pss.host-namespaces", "spec.hostIPC")},
    ),
    ("host-namespaces-false", p(spec(hostNetwork=False, hostPID=False, hostIPC=None)), NONE, NONE),
    # --- hostPath / volume types ------------------------------------------------------------------
    (
        "host-path",
        p(spec(volumes=[{"name": "root", "hostPath": {"path": "/"}}])),
        {("pss.host-path-volumes", "spec.volumes[0].hostPath")},
        {("pss.restricted-volumes", "spec.volumes[0].hostPath")},
    ),
    ("host-path-null", p(spec(volumes=[{"name": "v", "emptyDir": {}, "hostPath": None}])), NONE, NONE),
    (
        "host-path-beside-an-allowed-source",
        p(spec(volumes=[{"name": "v", "emptyDir": {}, "hostPath": {"path": "/etc"}}])),
        {("pss.host-path-volumes", "spec.volumes[0].hostPath")},
        {("pss.restricted-volumes", "spec.volumes[0].hostPath")},
    ),
    (
        "nfs",
        p(spec(volumes=[{"name": "n", "nfs": {"server": "s", "path": "/"}}])),
        NONE,
        {("pss.restricted-volumes", "spec.volumes[0].nfs")},
    ),
    (
        "git-repo-and-flex",
        p(
            spec(
                volumes=[
                    {"name": "g", "gitRepo": {"repository": "r"}},
                    {"name": "f", "flexVolume": {"driver": "d"}},
                ]
            )
        ),
        NONE,
        {
            ("pss.restricted-volumes", "spec.volumes[0].gitRepo"),
            ("pss.restricted-volumes", "spec.volumes[1].flexVolume"),
        },
    ),
    ("every-allowed-volume-type", p(spec(volumes=ALL_VOLUME_TYPES)), NONE, NONE),
    (
        "volume-without-source",
        p(spec(volumes=[{"name": "x"}])),
        NONE,
        {("pss.restricted-volumes", "spec.volumes[0]")},
    ),
    (
        "volume-source-wrong-type",
        p(spec(volumes=[{"name": "x", "emptyDir": "yes"}])),
        NONE,
        {("pss.restricted-volumes", "spec.volumes[0].emptyDir")},
    ),
    (
        "volumes-not-a-list",
        p(spec(volumes={"name": "x", "hostPath": {"path": "/"}})),
        {("pss.host-path-volumes", "spec.volumes")},
        {("pss.restricted-volumes", "spec.volumes")},
    ),
    # --- host ports ------------------------------------------------------------------------------
    (
        "host-port",
        p(spec(container(ports=[{"containerPort": 80, "hostPort": 8080}]))),
        {("pss.host-ports", f"{C0}.ports[0].hostPort")},
        {("pss.host-ports", f"{C0}.ports[0].hostPort")},
    ),
    ("host-port-zero", p(spec(container(ports=[{"containerPort": 80, "hostPort": 0}]))), NONE, NONE),
    (
        "host-port-false",
        p(spec(container(ports=[{"containerPort": 80, "hostPort": False}]))),
        {("pss.host-ports", f"{C0}.ports[0].hostPort")},
        {("pss.host-ports", f"{C0}.ports[0].hostPort")},
    ),
    (
        "host-port-string",
        p(spec(container(ports=[{"containerPort": 80, "hostPort": "80"}]))),
        {("pss.host-ports", f"{C0}.ports[0].hostPort")},
        {("pss.host-ports", f"{C0}.ports[0].hostPort")},
    ),
    (
        "host-port-init-container",
        p(spec(initContainers=[container("init", ports=[{"containerPort": 53, "hostPort": 53}])])),
        {("pss.host-ports", "spec.initContainers[0].ports[0].hostPort")},
        {("pss.host-ports", "spec.initContainers[0].ports[0].hostPort")},
    ),
    # --- probe and lifecycle hosts (1.34) -----------------------------------------------------------
    (
        "liveness-http-host",
        p(spec(container(livenessProbe={"httpGet": {"port": 80, "host": "169.254.169.254"}}))),
        {("pss.host-probes-and-host-lifecycle", f"{C0}.livenessProbe.httpGet.host")},
        {("pss.host-probes-and-host-lifecycle", f"{C0}.livenessProbe.httpGet.host")},
    ),
    (
        "readiness-tcp-host",
        p(spec(container(readinessProbe={"tcpSocket": {"port": 22, "host": "10.0.0.1"}}))),
        {("pss.host-probes-and-host-lifecycle", f"{C0}.readinessProbe.tcpSocket.host")},
        {("pss.host-probes-and-host-lifecycle", f"{C0}.readinessProbe.tcpSocket.host")},
    ),
    (
        "startup-host-init-container",
        p(spec(initContainers=[container("init", startupProbe={"httpGet": {"port": 1, "host": "node"}})])),
        {("pss.host-probes-and-host-lifecycle", "spec.initContainers[0].startupProbe.httpGet.host")},
        {("pss.host-probes-and-host-lifecycle", "spec.initContainers[0].startupProbe.httpGet.host")},
    ),
    (
        "lifecycle-hosts",
        p(
            spec(
                container(
                    lifecycle={
                        "postStart": {"httpGet": {"port": 1, "host": "a"}},
                        "preStop": {"tcpSocket": {"port": 1, "host": "b"}},
                    }
                )
            )
        ),
        {
            ("pss.host-probes-and-host-lifecycle", f"{C0}.lifecycle.postStart.httpGet.host"),
            ("pss.host-probes-and-host-lifecycle", f"{C0}.lifecycle.preStop.tcpSocket.host"),
        },
        {
            ("pss.host-probes-and-host-lifecycle", f"{C0}.lifecycle.postStart.httpGet.host"),
            ("pss.host-probes-and-host-lifecycle", f"{C0}.lifecycle.preStop.tcpSocket.host"),
        },
    ),
    (
        "probe-host-empty",
        p(
            spec(
                container(
                    livenessProbe={"httpGet": {"port": 80, "host": ""}},
                    lifecycle={"preStop": {"httpGet": {"port": 1, "host": None}}},
                )
            )
        ),
        NONE,
        NONE,
    ),
    # --- AppArmor: fields and annotations ------------------------------------------------------------
    (
        "apparmor-pod-unconfined",
        p(spec(securityContext={"appArmorProfile": {"type": "Unconfined"}})),
        {("pss.app-armor-profile", f"{PSC}.appArmorProfile.type")},
        {("pss.app-armor-profile", f"{PSC}.appArmorProfile.type")},
    ),
    (
        "apparmor-allowed-types",
        p(
            spec(
                sc(appArmorProfile={"type": "Localhost", "localhostProfile": "k8s-x"}),
                securityContext={"appArmorProfile": {"type": "RuntimeDefault"}},
            )
        ),
        NONE,
        NONE,
    ),
    (
        "apparmor-no-type",
        p(spec(sc(appArmorProfile={}))),
        {("pss.app-armor-profile", f"{SC0}.appArmorProfile.type")},
        {("pss.app-armor-profile", f"{SC0}.appArmorProfile.type")},
    ),
    (
        "apparmor-ephemeral-unconfined",
        p(
            spec(
                ephemeralContainers=[
                    container("dbg", securityContext={"appArmorProfile": {"type": "Unconfined"}})
                ]
            )
        ),
        {("pss.app-armor-profile", "spec.ephemeralContainers[0].securityContext.appArmorProfile.type")},
        {("pss.app-armor-profile", "spec.ephemeralContainers[0].securityContext.appArmorProfile.type")},
    ),
    (
        "apparmor-annotation-unconfined",
        p(spec(), annotations={AA + "app": "unconfined"}),
        {("pss.app-armor-profile", f"metadata.annotations.{AA}app")},
        {("pss.app-armor-profile", f"metadata.annotations.{AA}app")},
    ),
    (
        "apparmor-annotations-allowed",
        p(spec(), annotations={AA + "app": "runtime/default", AA + "b": "localhost/k8s-x", AA + "c": ""}),
        NONE,
        NONE,
    ),
    # PSA checks every annotation with the prefix, whether or not a container of that name exists
    (
        "apparmor-annotation-other-container",
        p(spec(), annotations={AA + "ghost": "unconfined"}),
        {("pss.app-armor-profile", f"metadata.annotations.{AA}ghost")},
        {("pss.app-armor-profile", f"metadata.annotations.{AA}ghost")},
    ),
    (
        "apparmor-annotation-not-a-string",
        p(spec(), annotations={AA + "app": 1}),
        {("pss.app-armor-profile", f"metadata.annotations.{AA}app")},
        {("pss.app-armor-profile", f"metadata.annotations.{AA}app")},
    ),
    # --- SELinux ------------------------------------------------------------------------------------
    (
        "selinux-pod-spc",
        p(spec(securityContext={"seLinuxOptions": {"type": "spc_t"}})),
        {("pss.se-linux-options", f"{PSC}.seLinuxOptions.type")},
        {("pss.se-linux-options", f"{PSC}.seLinuxOptions.type")},
    ),
    (
        "selinux-container-engine-type",
        p(spec(sc(seLinuxOptions={"type": "container_engine_t", "level": "s0:c1,c2"}))),
        NONE,
        NONE,
    ),
    (
        "selinux-user-and-role",
        p(spec(sc(seLinuxOptions={"user": "system_u", "role": "system_r"}))),
        {
            ("pss.se-linux-options", f"{SC0}.seLinuxOptions.user"),
            ("pss.se-linux-options", f"{SC0}.seLinuxOptions.role"),
        },
        {
            ("pss.se-linux-options", f"{SC0}.seLinuxOptions.user"),
            ("pss.se-linux-options", f"{SC0}.seLinuxOptions.role"),
        },
    ),
    ("selinux-empty", p(spec(sc(seLinuxOptions={}))), NONE, NONE),
    (
        "selinux-type-not-a-string",
        p(spec(sc(seLinuxOptions={"type": 5}))),
        {("pss.se-linux-options", f"{SC0}.seLinuxOptions.type")},
        {("pss.se-linux-options", f"{SC0}.seLinuxOptions.type")},
    ),
    # --- /proc mount ----------------------------------------------------------------------------------
    (
        "proc-mount-unmasked",
        p(spec(sc(procMount="Unmasked"))),
        {("pss.proc-mount", f"{SC0}.procMount")},
        {("pss.proc-mount-restricted", f"{SC0}.procMount")},
    ),
    ("proc-mount-default", p(spec(sc(procMount="Default"))), NONE, NONE),
    # 1.35: baseline allows it in a user namespace; restricted (procMount_restricted) never does
    (
        "proc-mount-user-namespace",
        p(spec(sc(procMount="Unmasked"), hostUsers=False)),
        NONE,
        {("pss.proc-mount-restricted", f"{SC0}.procMount")},
    ),
    (
        "proc-mount-host-users-string",
        p(spec(sc(procMount="Unmasked"), hostUsers="false")),
        {("pss.proc-mount", f"{SC0}.procMount")},
        {("pss.proc-mount-restricted", f"{SC0}.procMount")},
    ),
    # --- seccomp ----------------------------------------------------------------------------------------
    (
        "seccomp-pod-unconfined",
        p(spec(securityContext={"seccompProfile": {"type": "Unconfined"}})),
        {("pss.seccomp-profile-baseline", f"{PSC}.seccompProfile.type")},
        # the pod's profile is not valid, so the container that relies on it is unconfined too
        {
            ("pss.seccomp-profile-restricted", f"{PSC}.seccompProfile.type"),
            ("pss.seccomp-profile-restricted", f"{SC0}.seccompProfile.type"),
        },
    ),
    (
        "seccomp-unset",
        p(bare_spec(securityContext={"runAsNonRoot": True}, containers=[container()])),
        NONE,
        {("pss.seccomp-profile-restricted", f"{SC0}.seccompProfile.type")},
    ),
    (
        "seccomp-per-container",
        p(
            bare_spec(
                securityContext={"runAsNonRoot": True},
                containers=[
                    container(
                        "a",
                        securityContext={
                            "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}
                        },
                    ),
                    container("b"),
                ],
            )
        ),
        NONE,
        {("pss.seccomp-profile-restricted", "spec.containers[1].securityContext.seccompProfile.type")},
    ),
    (
        "seccomp-container-unconfined",
        p(spec(sc(seccompProfile={"type": "Unconfined"}))),
        {("pss.seccomp-profile-baseline", f"{SC0}.seccompProfile.type")},
        {("pss.seccomp-profile-restricted", f"{SC0}.seccompProfile.type")},
    ),
    (
        "seccomp-no-type",
        p(spec(sc(seccompProfile={}))),
        {("pss.seccomp-profile-baseline", f"{SC0}.seccompProfile.type")},
        {("pss.seccomp-profile-restricted", f"{SC0}.seccompProfile.type")},
    ),
    (
        "seccomp-annotation-style-value",
        p(spec(sc(seccompProfile={"type": "runtime/default"}))),
        {("pss.seccomp-profile-baseline", f"{SC0}.seccompProfile.type")},
        {("pss.seccomp-profile-restricted", f"{SC0}.seccompProfile.type")},
    ),
    # --- sysctls ------------------------------------------------------------------------------------------
    (
        "sysctls-safe",
        p(spec(securityContext={"sysctls": [{"name": n, "value": "1"} for n in sorted(SAFE_SYSCTLS)]})),
        NONE,
        NONE,
    ),
    (
        "sysctl-unsafe",
        p(spec(securityContext={"sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]})),
        {("pss.sysctls", f"{PSC}.sysctls[0].name")},
        {("pss.sysctls", f"{PSC}.sysctls[0].name")},
    ),
    (
        "sysctl-without-name",
        p(spec(securityContext={"sysctls": [{"value": "1"}]})),
        {("pss.sysctls", f"{PSC}.sysctls[0].name")},
        {("pss.sysctls", f"{PSC}.sysctls[0].name")},
    ),
    (
        "sysctls-not-a-list",
        p(spec(securityContext={"sysctls": "kernel.msgmax=1"})),
        {("pss.sysctls", f"{PSC}.sysctls")},
        {("pss.sysctls", f"{PSC}.sysctls")},
    ),
    # --- Windows HostProcess --------------------------------------------------------------------------------
    (
        "host-process-pod",
        p(spec(securityContext={"windowsOptions": {"hostProcess": True}})),
        {("pss.windows-host-process", f"{PSC}.windowsOptions.hostProcess")},
        {("pss.windows-host-process", f"{PSC}.windowsOptions.hostProcess")},
    ),
    (
        "host-process-container",
        p(spec(sc(windowsOptions={"hostProcess": True}))),
        {("pss.windows-host-process", f"{SC0}.windowsOptions.hostProcess")},
        {("pss.windows-host-process", f"{SC0}.windowsOptions.hostProcess")},
    ),
    ("host-process-false", p(spec(sc(windowsOptions={"hostProcess": False}))), NONE, NONE),
    # --- capabilities ----------------------------------------------------------------------------------------
    (
        "cap-sys-admin",
        p(spec(sc(capabilities={"add": ["SYS_ADMIN"]}))),
        {("pss.capabilities-baseline", f"{SC0}.capabilities.add[0]")},
        {("pss.capabilities-restricted", f"{SC0}.capabilities.add[0]")},
    ),
    (
        "cap-chown",
        p(spec(sc(capabilities={"add": ["CHOWN"]}))),
        NONE,
        {("pss.capabilities-restricted", f"{SC0}.capabilities.add[0]")},
    ),
    ("cap-net-bind-service", p(spec(sc(capabilities={"add": ["NET_BIND_SERVICE"]}))), NONE, NONE),
    # names are exact: PSA does not strip CAP_ or fold case
    (
        "cap-names-exact",
        p(spec(sc(capabilities={"add": ["CAP_CHOWN", "chown"]}))),
        {
            ("pss.capabilities-baseline", f"{SC0}.capabilities.add[0]"),
            ("pss.capabilities-baseline", f"{SC0}.capabilities.add[1]"),
        },
        {
            ("pss.capabilities-restricted", f"{SC0}.capabilities.add[0]"),
            ("pss.capabilities-restricted", f"{SC0}.capabilities.add[1]"),
        },
    ),
    (
        "cap-add-not-a-list",
        p(spec(sc(capabilities={"add": "SYS_ADMIN"}))),
        {("pss.capabilities-baseline", f"{SC0}.capabilities.add")},
        {("pss.capabilities-restricted", f"{SC0}.capabilities.add")},
    ),
    (
        "cap-drop-lowercase-all",
        p(spec(sc(capabilities={"drop": ["all"]}))),
        NONE,
        {("pss.capabilities-restricted", f"{SC0}.capabilities.drop")},
    ),
    (
        "cap-drop-not-a-list",
        p(spec(sc(capabilities={"drop": "ALL"}))),
        NONE,
        {("pss.capabilities-restricted", f"{SC0}.capabilities.drop")},
    ),
    (
        "no-container-security-context",
        p(bare_spec(securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}})),
        NONE,
        {
            ("pss.allow-privilege-escalation", f"{SC0}.allowPrivilegeEscalation"),
            ("pss.capabilities-restricted", f"{SC0}.capabilities.drop"),
        },
    ),
    # --- Windows pods: PSA 1.25 skips allowPrivilegeEscalation, capabilities and seccomp at restricted ----------
    (
        "windows-minimal",
        p(bare_spec(os={"name": "windows"}, securityContext={"runAsNonRoot": True})),
        NONE,
        NONE,
    ),
    # capabilities_restricted allows Windows pods outright and replaces capabilities_baseline, so PSA's
    # restricted level admits what its baseline level refuses (the API server refuses it anyway)
    (
        "windows-cap-sys-admin",
        p(
            bare_spec(
                os={"name": "windows"},
                securityContext={"runAsNonRoot": True},
                containers=[
                    {"name": "app", "image": "x", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}
                ],
            )
        ),
        {("pss.capabilities-baseline", f"{SC0}.capabilities.add[0]")},
        NONE,
    ),
    (
        "windows-seccomp-unconfined",
        p(
            bare_spec(
                os={"name": "windows"},
                securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "Unconfined"}},
            )
        ),
        {("pss.seccomp-profile-baseline", f"{PSC}.seccompProfile.type")},
        NONE,
    ),
    (
        "windows-still-needs-run-as-non-root",
        p(bare_spec(os={"name": "windows"})),
        NONE,
        {("pss.run-as-non-root", f"{SC0}.runAsNonRoot")},
    ),
    (
        "os-name-is-exact",
        p(bare_spec(os={"name": "Windows"}, securityContext={"runAsNonRoot": True})),
        NONE,
        {
            ("pss.allow-privilege-escalation", f"{SC0}.allowPrivilegeEscalation"),
            ("pss.capabilities-restricted", f"{SC0}.capabilities.drop"),
            ("pss.seccomp-profile-restricted", f"{SC0}.seccompProfile.type"),
        },
    ),
    # --- allowPrivilegeEscalation ------------------------------------------------------------------------------
    (
        "ape-true",
        p(spec(sc(allowPrivilegeEscalation=True))),
        NONE,
        {("pss.allow-privilege-escalation", f"{SC0}.allowPrivilegeEscalation")},
    ),
    (
        "ape-string-false",
        p(spec(sc(allowPrivilegeEscalation="false"))),
        NONE,
        {("pss.allow-privilege-escalation", f"{SC0}.allowPrivilegeEscalation")},
    ),
    (
        "ape-unset-init-container",
        p(
            spec(
                initContainers=[
                    {"name": "init", "image": "x", "securityContext": {"capabilities": {"drop": ["ALL"]}}}
                ]
            )
        ),
        NONE,
        {
            (
                "pss.allow-privilege-escalation",
                "spec.initContainers[0].securityContext.allowPrivilegeEscalation",
            )
        },
    ),
    # --- runAsNonRoot: pod and container combine ------------------------------------------------------------------
    (
        "rnr-container-only",
        p(spec(sc(runAsNonRoot=True), securityContext={"runAsNonRoot": None})),
        NONE,
        NONE,
    ),
    (
        "rnr-nowhere",
        p(spec(securityContext={"runAsNonRoot": None})),
        NONE,
        {("pss.run-as-non-root", f"{SC0}.runAsNonRoot")},
    ),
    # an explicit pod-level false fails even when every container says true
    (
        "rnr-pod-false",
        p(spec(sc(runAsNonRoot=True), securityContext={"runAsNonRoot": False})),
        NONE,
        {("pss.run-as-non-root", f"{PSC}.runAsNonRoot")},
    ),
    (
        "rnr-container-false",
        p(spec(sc(runAsNonRoot=False))),
        NONE,
        {("pss.run-as-non-root", f"{SC0}.runAsNonRoot")},
    ),
    (
        "rnr-ephemeral-false",
        p(spec(ephemeralContainers=[container("dbg", securityContext={"runAsNonRoot": False})])),
        NONE,
        {("pss.run-as-non-root", "spec.ephemeralContainers[0].securityContext.runAsNonRoot")},
    ),
    (
        "rnr-pod-string",
        p(spec(securityContext={"runAsNonRoot": "true"})),
        NONE,
        {("pss.run-as-non-root", f"{PSC}.runAsNonRoot"), ("pss.run-as-non-root", f"{SC0}.runAsNonRoot")},
    ),
    # --- runAsUser --------------------------------------------------------------------------------------------
    (
        "run-as-user-pod-0",
        p(spec(securityContext={"runAsUser": 0})),
        NONE,
        {("pss.run-as-user", f"{PSC}.runAsUser")},
    ),
    (
        "run-as-user-container-0",
        p(spec(sc(runAsUser=0), securityContext={"runAsUser": 1000})),
        NONE,
        {("pss.run-as-user", f"{SC0}.runAsUser")},
    ),
    ("run-as-user-nonzero", p(spec(sc(runAsUser=10001), securityContext={"runAsUser": 1000})), NONE, NONE),
    (
        "run-as-user-wrong-types",
        p(spec(sc(runAsUser=True), securityContext={"runAsUser": "0"})),
        NONE,
        {("pss.run-as-user", f"{PSC}.runAsUser"), ("pss.run-as-user", f"{SC0}.runAsUser")},
    ),
    # --- user namespaces (1.35): root inside is not root on the node ----------------------------------------------
    (
        "user-namespace-root",
        p(
            spec(
                sc(runAsUser=0, runAsNonRoot=False),
                hostUsers=False,
                securityContext={"runAsNonRoot": False, "runAsUser": 0},
            )
        ),
        NONE,
        NONE,
    ),
    (
        "host-users-true-is-not-a-user-namespace",
        p(spec(hostUsers=True, securityContext={"runAsUser": 0})),
        NONE,
        {("pss.run-as-user", f"{PSC}.runAsUser")},
    ),
]


@pytest.mark.parametrize(("doc", "baseline", "restricted"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_psa_case(
    doc: dict[str, Any], baseline: set[tuple[str, str]], restricted: set[tuple[str, str]]
) -> None:
    assert hits(doc, BASELINE) == baseline
    assert hits(doc, RESTRICTED) == restricted


def test_case_ids_are_unique() -> None:
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names))


# --- rule metadata -------------------------------------------------------------------------------


def test_one_rule_per_psa_check_with_its_id_pack_and_control() -> None:
    got: dict[str, set[str]] = {}
    for rule in pss.rules():
        meta = rule.meta
        check = meta.controls[0].removeprefix("pss:")
        assert meta.controls[0] == f"pss:{check}"
        assert meta.id == rule_id(check)
        assert not any(c.startswith("pss:") for c in meta.controls[1:])
        assert any(c.startswith("nist-800-190:") for c in meta.controls), meta.id
        assert any(c.startswith("nist-800-53:") for c in meta.controls), meta.id
        got.setdefault(meta.pack, set()).add(check)
    assert got == PSA_CHECK_IDS
    assert len(REGISTRY) == 19


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        ("procMount_restricted", "pss.proc-mount-restricted"),
        ("hostProbesAndHostLifecycle", "pss.host-probes-and-host-lifecycle"),
        ("seLinuxOptions", "pss.se-linux-options"),
        ("capabilities_baseline", "pss.capabilities-baseline"),
    ],
)
def test_rule_id_is_kebab_case_of_the_check_id(check: str, expected: str) -> None:
    assert rule_id(check) == expected


def test_equivalents_name_real_peer_ids(shared_data: Path) -> None:
    trivy = json.loads((shared_data / "trivy-checks" / "CHECK_INDEX.json").read_text())
    ksv_aliases = {a for c in trivy for a in c["aliases"] if re.fullmatch(r"KSV\d{3}", a)}
    checkov = {
        e["check_id"]
        for e in json.loads((shared_data / "checkov" / "EXPECTED_SUMMARY.json").read_text())
        if "check_id" in e
    }
    grades = json.loads((shared_data / "kube-score" / "EXPECTED_GRADES.json").read_text())
    kube_score = {e["check"].lower().replace(" ", "-") for e in grades}
    seen_trivy: set[str] = set()
    for rule in pss.rules():
        eq = rule.meta.equivalents
        assert set(eq) <= {"checkov", "trivy", "kubesec", "kube-score"}, rule.meta.id
        assert set(eq.get("trivy", ())) <= ksv_aliases, rule.meta.id
        assert set(eq.get("checkov", ())) <= checkov, rule.meta.id
        assert set(eq.get("kube-score", ())) <= kube_score, rule.meta.id
        seen_trivy |= set(eq.get("trivy", ()))
    # every Trivy check that is a PSS control is reachable from one of our rules
    assert {
        "KSV017",
        "KSV008",
        "KSV009",
        "KSV010",
        "KSV023",
        "KSV024",
        "KSV002",
        "KSV025",
        "KSV027",
        "KSV030",
        "KSV026",
        "KSV103",
        "KSV022",
        "KSV003",
        "KSV028",
        "KSV001",
        "KSV012",
        "KSV105",
        "KSV104",
    } <= seen_trivy


def test_peer_ids_translate_to_our_rules() -> None:
    assert REGISTRY.translate("CKV_K8S_16") == ("pss.privileged",)
    assert REGISTRY.translate("ksv017") == ("pss.privileged",)
    assert set(REGISTRY.translate("KSV027")) == {"pss.proc-mount", "pss.proc-mount-restricted"}
    assert REGISTRY.translate("container-security-context-privileged") == ("pss.privileged",)


# --- levels and overrides ------------------------------------------------------------------------


def test_restricted_rules_never_report_at_baseline() -> None:
    everything = p(
        bare_spec(
            securityContext={"runAsUser": 0}, volumes=[{"name": "n", "nfs": {"server": "s", "path": "/"}}]
        )
    )
    assert {f.rule_id for f in findings(everything, RESTRICTED)} >= {
        "pss.run-as-user",
        "pss.restricted-volumes",
        "pss.run-as-non-root",
    }
    assert findings(everything, BASELINE) == []


@pytest.mark.parametrize(("baseline_id", "restricted_id"), sorted(OVERRIDES.items()))
def test_restricted_replaces_baseline_check_like_psa(baseline_id: str, restricted_id: str) -> None:
    doc = p(
        spec(
            sc(
                capabilities={"add": ["SYS_ADMIN"], "drop": ["ALL"]},
                seccompProfile={"type": "Unconfined"},
                procMount="Unmasked",
            ),
            volumes=[{"name": "root", "hostPath": {"path": "/"}}],
        )
    )
    at_baseline = {f.rule_id for f in findings(doc, BASELINE)}
    at_restricted = {f.rule_id for f in findings(doc, RESTRICTED)}
    assert baseline_id in at_baseline
    assert restricted_id not in at_baseline
    assert restricted_id in at_restricted
    assert baseline_id not in at_restricted


def test_baseline_check_stays_on_when_its_restricted_replacement_is_disabled() -> None:
    # Security switched capabilities_restricted off: the baseline check must not vanish with it
    enabled = frozenset(r.meta.id for r in pss.rules()) - {"pss.capabilities-restricted"}
    policy = Policy(pss_level=RESTRICTED, enabled_rules=enabled)
    doc = p(spec(sc(capabilities={"add": ["SYS_ADMIN"], "drop": ["ALL"]})))
    assert hits(doc, RESTRICTED, policy) == {("pss.capabilities-baseline", f"{SC0}.capabilities.add[0]")}


def test_replacement_reports_baseline_problems_at_baseline_severity() -> None:
    doc = p(
        spec(
            sc(
                capabilities={"add": ["SYS_ADMIN", "CHOWN"], "drop": ["ALL"]},
                seccompProfile={"type": "Unconfined"},
            ),
            container("b", securityContext={"seccompProfile": None}),
            volumes=[
                {"name": "root", "hostPath": {"path": "/"}},
                {"name": "n", "nfs": {"server": "s", "path": "/"}},
            ],
            securityContext={"seccompProfile": None},
        )
    )
    sev = {(f.rule_id, f.location.field): f.severity for f in findings(doc, RESTRICTED)}
    assert sev[("pss.restricted-volumes", "spec.volumes[0].hostPath")] is Severity.HIGH
    assert sev[("pss.restricted-volumes", "spec.volumes[1].nfs")] is Severity.MEDIUM
    assert sev[("pss.capabilities-restricted", f"{SC0}.capabilities.add[0]")] is Severity.HIGH
    assert sev[("pss.capabilities-restricted", f"{SC0}.capabilities.add[1]")] is Severity.MEDIUM
    assert sev[("pss.seccomp-profile-restricted", f"{SC0}.seccompProfile.type")] is Severity.HIGH
    assert (
        sev[("pss.seccomp-profile-restricted", "spec.containers[1].securityContext.seccompProfile.type")]
        is Severity.MEDIUM
    )
    # the same problems at baseline, through the baseline rules
    base = {(f.rule_id, f.location.field): f.severity for f in findings(doc, BASELINE)}
    assert base[("pss.host-path-volumes", "spec.volumes[0].hostPath")] is Severity.HIGH
    assert base[("pss.capabilities-baseline", f"{SC0}.capabilities.add[0]")] is Severity.HIGH


def test_security_owned_severity_override_wins_over_escalation() -> None:
    policy = Policy(pss_level=RESTRICTED, severity_overrides={"pss.restricted-volumes": Severity.LOW})
    doc = p(spec(volumes=[{"name": "root", "hostPath": {"path": "/"}}]))
    (f,) = findings(doc, RESTRICTED, policy)
    assert (f.rule_id, f.severity) == ("pss.restricted-volumes", Severity.LOW)


# --- hostile and malformed input ---------------------------------------------------------------------


CONTAINER_SC_RULES_BASELINE = {
    "pss.privileged",
    "pss.windows-host-process",
    "pss.capabilities-baseline",
    "pss.app-armor-profile",
    "pss.se-linux-options",
    "pss.proc-mount",
    "pss.seccomp-profile-baseline",
}
CONTAINER_SC_RULES_RESTRICTED = (CONTAINER_SC_RULES_BASELINE - set(OVERRIDES)) | {
    "pss.capabilities-restricted",
    "pss.seccomp-profile-restricted",
    "pss.proc-mount-restricted",
    "pss.allow-privilege-escalation",
    "pss.run-as-non-root",
    "pss.run-as-user",
}


def test_malformed_security_context_fails_every_check_that_reads_it() -> None:
    # a string where PSA expects a SecurityContext: nothing in it can be trusted to be safe
    doc = p(
        spec(
            {"name": "app", "image": "x", "securityContext": "privileged: true"},
            securityContext={"runAsNonRoot": True},
        )
    )
    for level, expected in (
        (BASELINE, CONTAINER_SC_RULES_BASELINE),
        (RESTRICTED, CONTAINER_SC_RULES_RESTRICTED),
    ):
        got = hits(doc, level)
        assert {r for r, _ in got} == expected, level
        assert {field for _, field in got} == {SC0}
        assert all("cannot be verified" in f.message for f in findings(doc, level))


def test_malformed_pod_security_context_fails_closed() -> None:
    doc = p(
        {
            "securityContext": ["runAsNonRoot", True],
            "containers": [
                container(
                    securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
                )
            ],
        }
    )
    got = hits(doc, RESTRICTED)
    assert ("pss.run-as-non-root", PSC) in got
    assert ("pss.run-as-user", PSC) in got
    assert ("pss.sysctls", PSC) in got
    assert ("pss.se-linux-options", PSC) in got


def test_os_windows_only_relaxes_the_three_restricted_checks() -> None:
    # claiming to be a Windows pod must not buy anything beyond what PSA grants
    doc = p(
        bare_spec(
            os={"name": "windows"},
            hostNetwork=True,
            securityContext={"runAsUser": 0},
            containers=[
                {
                    "name": "app",
                    "image": "x",
                    "securityContext": {"privileged": True, "procMount": "Unmasked"},
                }
            ],
            volumes=[{"name": "root", "hostPath": {"path": "/"}}],
        )
    )
    assert {r for r, _ in hits(doc, RESTRICTED)} == {
        "pss.host-namespaces",
        "pss.privileged",
        "pss.proc-mount-restricted",
        "pss.restricted-volumes",
        "pss.run-as-non-root",
        "pss.run-as-user",
    }


def test_user_namespace_does_not_relax_anything_else() -> None:
    doc = p(
        spec(
            sc(privileged=True, procMount="Unmasked", allowPrivilegeEscalation=True),
            hostUsers=False,
            securityContext={"runAsUser": 0},
        )
    )
    assert {r for r, _ in hits(doc, RESTRICTED)} == {
        "pss.privileged",
        "pss.proc-mount-restricted",
        "pss.allow-privilege-escalation",
    }


def test_rules_do_not_mutate_the_resource() -> None:
    doc = p(
        spec(
            sc(privileged=True, capabilities={"add": ["SYS_ADMIN"]}, seccompProfile={}),
            volumes=[{"name": "x"}, {"name": "root", "hostPath": {"path": "/"}}],
            securityContext={"sysctls": [{"name": "kernel.msgmax"}]},
        ),
        annotations={AA + "app": "unconfined"},
    )
    before = copy.deepcopy(doc)
    for level in (BASELINE, RESTRICTED):
        assert findings(doc, level)
    assert doc == before


def test_objects_without_a_pod_spec_are_ignored() -> None:
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "spec": {"hostNetwork": True, "containers": [{"name": "a", "securityContext": {"privileged": True}}]},
    }
    assert findings(cm, RESTRICTED) == []
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"template": "oops"},
    }
    assert findings(broken, RESTRICTED) == []


def test_workload_templates_report_template_paths() -> None:
    tmpl = {"metadata": {"annotations": {AA + "app": "unconfined"}}, "spec": spec(sc(privileged=True))}
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "annotations": {AA + "x": "unconfined"}},
        "spec": {"template": tmpl},
    }
    assert hits(deploy, BASELINE) == {
        ("pss.privileged", "spec.template.spec.containers[0].securityContext.privileged"),
        # the template's annotations are the pod's; the Deployment's own are not
        ("pss.app-armor-profile", f"spec.template.metadata.annotations.{AA}app"),
    }
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "c"},
        "spec": {"jobTemplate": {"spec": {"template": tmpl}}},
    }
    assert (
        "pss.privileged",
        "spec.jobTemplate.spec.template.spec.containers[0].securityContext.privileged",
    ) in hits(cron, BASELINE)


def test_messages_name_the_container_and_the_value() -> None:
    doc = p(
        spec(
            sc(capabilities={"add": ["SYS_ADMIN"], "drop": ["ALL"]}, allowPrivilegeEscalation=True),
            hostPID=True,
            volumes=[{"name": "root", "hostPath": {"path": "/"}}],
        )
    )
    msgs = {f.rule_id: f.message for f in findings(doc, BASELINE)}
    assert (
        msgs["pss.capabilities-baseline"]
        == "container \"app\" must not include 'SYS_ADMIN' in securityContext.capabilities.add"
    )
    assert msgs["pss.host-namespaces"] == "pod must not set hostPID=true"
    assert msgs["pss.host-path-volumes"] == 'volume "root" must not use hostPath (/)'
    ape = rule_hits(doc, RESTRICTED, "pss.allow-privilege-escalation")
    assert [(f.location.container, f.message) for f in ape] == [
        ("app", 'container "app" must set securityContext.allowPrivilegeEscalation=false (found True)')
    ]
    rnr = rule_hits(p(spec(securityContext={"runAsNonRoot": None})), RESTRICTED, "pss.run-as-non-root")
    assert [f.message for f in rnr] == ['pod or container "app" must set securityContext.runAsNonRoot=true']


def test_every_rule_has_real_remediation_and_sensible_severity() -> None:
    for rule in pss.rules():
        meta = rule.meta
        assert len(meta.remediation) > 30, meta.id
        assert len(meta.description) > 60, meta.id
        if meta.id in {"pss.privileged", "pss.windows-host-process"}:
            assert meta.severity is Severity.CRITICAL
        elif meta.pack == "pss-baseline" and meta.id != "pss.host-probes-and-host-lifecycle":
            assert meta.severity.at_least(Severity.HIGH), meta.id
        else:
            assert meta.severity.at_least(Severity.MEDIUM), meta.id


def test_k8s_object_from_yaml_and_from_json_agree() -> None:
    doc = p(spec(sc(privileged=True)))
    a = findings(doc, BASELINE)
    b = findings(json.loads(json.dumps(doc)), BASELINE)
    assert [(f.rule_id, f.fingerprint) for f in a] == [(f.rule_id, f.fingerprint) for f in b]
    assert isinstance(K8sObject(file="x", doc=doc).doc, dict)


# --- through the real engine: YAML in, lines out ----------------------------------------------------

ENGINE_YAML = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  template:
    metadata:
      annotations:
        container.apparmor.security.beta.kubernetes.io/web: unconfined
    spec:
      hostPID: true
      securityContext:
        runAsNonRoot: true
        seccompProfile: {type: RuntimeDefault}
      initContainers:
      - name: setup
        image: registry.example/setup:1
        securityContext:
          allowPrivilegeEscalation: false
          capabilities:
            drop: [ALL]
            add:
            - NET_ADMIN
      containers:
      - name: web
        image: registry.example/web:1
        ports:
        - containerPort: 80
          hostPort: 80
        livenessProbe:
          httpGet: {port: 80, host: 169.254.169.254}
      volumes:
      - name: root
        hostPath:
          path: /
"""


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_engine_reports_each_problem_on_its_own_line_at_baseline() -> None:
    report = make_scanner(Policy(pss_level=BASELINE)).scan(["-"], stdin=io.BytesIO(ENGINE_YAML.encode()))
    assert report.errors == ()
    got = {
        (f.rule_id, f.location.line, f.location.container)
        for f in report.findings
        if f.rule_id.startswith("pss.")
    }
    assert got == {
        ("pss.app-armor-profile", _line_of(ENGINE_YAML, "apparmor"), "web"),
        ("pss.host-namespaces", _line_of(ENGINE_YAML, "hostPID"), None),
        ("pss.capabilities-baseline", _line_of(ENGINE_YAML, "NET_ADMIN"), "setup"),
        ("pss.host-ports", _line_of(ENGINE_YAML, "hostPort"), "web"),
        ("pss.host-probes-and-host-lifecycle", _line_of(ENGINE_YAML, "httpGet"), "web"),
        ("pss.host-path-volumes", _line_of(ENGINE_YAML, "hostPath:"), None),
    }


def test_engine_points_missing_fields_at_the_closest_parent_at_restricted() -> None:
    report = make_scanner(Policy(pss_level=RESTRICTED)).scan(["-"], stdin=io.BytesIO(ENGINE_YAML.encode()))
    got = {
        (f.rule_id, f.location.line, f.location.container)
        for f in report.findings
        if f.rule_id.startswith("pss.")
    }
    web_item = _line_of(ENGINE_YAML, "- name: web")
    assert (
        "pss.allow-privilege-escalation",
        web_item,
        "web",
    ) in got  # no securityContext: the container's line
    assert ("pss.capabilities-restricted", web_item, "web") in got
    assert ("pss.capabilities-restricted", _line_of(ENGINE_YAML, "NET_ADMIN"), "setup") in got
    assert ("pss.restricted-volumes", _line_of(ENGINE_YAML, "hostPath:"), None) in got
    ids = {r for r, _, _ in got}
    assert "pss.host-path-volumes" not in ids
    assert "pss.capabilities-baseline" not in ids
    assert report.exit_code == 1  # hostPath and NET_ADMIN are high at restricted too


YAML_TRICKS = """\
apiVersion: v1
kind: Pod
metadata:
  name: tricks
spec:
  containers:
  - name: merged
    image: registry.example/a:1
    securityContext:
      <<: {privileged: false}
      privileged: true
  - name: from-anchor
    image: registry.example/b:1
    securityContext: &escalate
      privileged: yes
  - name: quoted
    image: registry.example/c:1
    securityContext:
      privileged: "false"
  ephemeralContainers:
  - name: debug
    image: registry.example/d:1
    securityContext: *escalate
"""


def test_yaml_tricks_do_not_hide_a_privileged_container() -> None:
    # merge keys (the explicit key wins, as in the API server's YAML 1.1 decoder), YAML 1.1 `yes`,
    # an alias reused by an ephemeral container, a quoted "false": every one is caught
    report = make_scanner(Policy(pss_level=BASELINE)).scan(["-"], stdin=io.BytesIO(YAML_TRICKS.encode()))
    got = {(f.location.container, f.location.line) for f in report.findings if f.rule_id == "pss.privileged"}
    merged = {line for name, line in got if name == "merged"}
    # the loader records a merged key at the merge source's line even though the explicit value wins;
    # the finding is still on the container's securityContext block
    assert len(merged) == 1
    assert merged <= {
        _line_of(YAML_TRICKS, "<<: {privileged: false}"),
        _line_of(YAML_TRICKS, "privileged: true"),
    }
    assert got - {("merged", line) for line in merged} == {
        ("from-anchor", _line_of(YAML_TRICKS, "privileged: yes")),
        ("quoted", _line_of(YAML_TRICKS, 'privileged: "false"')),
        # an alias has no lines of its own: the finding points where the value is written
        ("debug", _line_of(YAML_TRICKS, "privileged: yes")),
    }
