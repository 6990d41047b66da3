"""Everything needed to run the webhook in a cluster, as Kubernetes objects.

The Deployment is held to dutyguard's own restricted scan (a test scans this output), runs two
replicas spread over nodes with a PodDisruptionBudget, and mounts what it needs as files: the
serving certificate (Secret), the control plane's public key (ConfigMap) and the ``cluster``
identity's token (a Secret the operator creates; tokens never go through flags or env). With a
control plane, an emptyDir holds the audit spool, so denials survive a container crash. With
namespace labels on (the default), a ClusterRole reads namespaces and nothing else, and only the
webhook container gets a projected service account token.

The ValidatingWebhookConfiguration fails closed (``failurePolicy: Fail``), exempts the
webhook's own namespace and ``kube-system`` (otherwise the webhook could never be rescheduled
while it is down, and neither could the components the cluster needs to recover), declares
``sideEffects: None`` and speaks only ``admission.k8s.io/v1``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dutyguard import __version__
from dutyguard.admission.app import VALIDATE_PATH
from dutyguard.admission.decide import EVALUATED_KINDS
from dutyguard.errors import ConfigError

Doc = dict[str, Any]

WEBHOOK_NAME = "validate.admission.dutyguard.dev"
APP = "dutyguard-admission"
PORT = 8443
UID = 10001
TLS_DIR = "/etc/dutyguard/tls"
TRUST_DIR = "/etc/dutyguard/trust"
TOKEN_DIR = "/var/run/secrets/dutyguard"  # noqa: S105 - a mount path, not a secret
CACHE_DIR = "/var/cache/dutyguard"
SPOOL_MOUNT = "/var/lib/dutyguard"
SPOOL_DIR = f"{SPOOL_MOUNT}/spool"
"""A directory the webhook creates 0700 inside the emptyDir: the kubelet makes an emptyDir's own
root 0777, which ``--spool-dir`` refuses (another user could plant what it replays)."""
SPOOL_SIZE_LIMIT = "128Mi"
"""Twice the journal's default bound (40 MiB) while it is rewritten on start, plus the saved batch:
an emptyDir over its sizeLimit gets the pod evicted, spool and all."""
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_IMAGE = f"ghcr.io/dutyguard/dutyguard:{__version__}"


@dataclass(frozen=True, slots=True)
class ManifestOptions:
    namespace: str = "dutyguard-system"
    name: str = APP
    image: str = DEFAULT_IMAGE
    replicas: int = 2
    failure_policy: str = "Fail"
    timeout_seconds: int = 5
    ca_bundle: bytes | None = None
    """PEM of the CA that signed the serving certificate (``dutyguard admission certs``)."""
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    """When given, the serving certificate is included as a Secret."""
    control_plane: str | None = None
    cluster: str = ""
    trust_key: bytes | None = None
    """The control plane's public key (``dutyguard keys export``), pinned in a ConfigMap."""
    fail_mode: str = "deny"
    exempt_namespaces: tuple[str, ...] = ("kube-system",)
    namespace_labels: bool = True
    """Read namespace labels (``serve --namespace-labels``): a ClusterRole to get/list/watch
    namespaces, its binding, and a projected service account token for the webhook container."""
    labels: Mapping[str, str] = field(default_factory=dict)


def _check(o: ManifestOptions) -> None:
    if o.failure_policy not in ("Fail", "Ignore"):
        raise ConfigError("--failure-policy must be Fail or Ignore")
    if not 1 <= o.timeout_seconds <= 30:
        raise ConfigError("--timeout must be between 1 and 30 seconds (the API server's range)")
    if o.replicas < 1:
        raise ConfigError("--replicas must be at least 1")
    if o.control_plane and not o.trust_key:
        raise ConfigError("--control-plane needs --trust KEY: the webhook never enforces unverified state")
    if o.control_plane and not o.cluster:
        raise ConfigError(
            "--control-plane needs --cluster NAME (exceptions and audit entries are per cluster)"
        )
    if (o.tls_cert is None) != (o.tls_key is None):
        raise ConfigError("give both the serving certificate and its key, or neither")


def _labels(o: ManifestOptions) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": o.name,
        "app.kubernetes.io/part-of": "dutyguard",
        "app.kubernetes.io/component": "admission-webhook",
        "app.kubernetes.io/version": __version__,
        **o.labels,
    }


def _selector(o: ManifestOptions) -> dict[str, str]:
    return {"app.kubernetes.io/name": o.name, "app.kubernetes.io/component": "admission-webhook"}


def _meta(o: ManifestOptions, name: str | None = None, namespaced: bool = True) -> Doc:
    meta: Doc = {"name": name or o.name, "labels": _labels(o)}
    if namespaced:
        meta["namespace"] = o.namespace
    return meta


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def namespace(o: ManifestOptions) -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": o.namespace,
            "labels": {
                **_labels(o),
                # The webhook's own namespace is exempt from the webhook; Pod Security
                # Admission still holds it to restricted.
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }


def service_account(o: ManifestOptions) -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(o),
        "automountServiceAccountToken": False,
    }


def deployment(o: ManifestOptions) -> Doc:
    args = [
        "admission",
        "serve",
        "--port",
        str(PORT),
        "--cert",
        f"{TLS_DIR}/tls.crt",
        "--key",
        f"{TLS_DIR}/tls.key",
        "--fail-mode",
        o.fail_mode,
    ]
    volumes: list[Doc] = [
        {"name": "tls", "secret": {"secretName": f"{o.name}-tls", "defaultMode": 0o440}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}},
    ]
    mounts: list[Doc] = [
        {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir in the pod
    ]
    if o.namespace_labels:
        args.append("--namespace-labels")
        volumes.append(_api_access_volume())
        mounts.append({"name": "kube-api-access", "mountPath": SA_DIR, "readOnly": True})
    if o.control_plane:
        args += [
            "--control-plane",
            o.control_plane,
            "--cluster",
            o.cluster,
            "--trust",
            f"{TRUST_DIR}/control-plane.pub",
            "--token-file",
            f"{TOKEN_DIR}/token",
            "--cache-dir",
            CACHE_DIR,
            # Denials and exception uses survive a crash of the container: an emptyDir outlives
            # container restarts in the pod (not the pod itself).
            "--spool-dir",
            SPOOL_DIR,
        ]
        volumes += [
            {"name": "trust", "configMap": {"name": f"{o.name}-trust"}},
            {"name": "token", "secret": {"secretName": f"{o.name}-token", "defaultMode": 0o440}},
            {"name": "cache", "emptyDir": {"sizeLimit": "64Mi"}},
            {"name": "spool", "emptyDir": {"sizeLimit": SPOOL_SIZE_LIMIT}},
        ]
        mounts += [
            {"name": "trust", "mountPath": TRUST_DIR, "readOnly": True},
            {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True},
            {"name": "cache", "mountPath": CACHE_DIR},
            {"name": "spool", "mountPath": SPOOL_MOUNT},
        ]
    probe_port = "https"
    container: Doc = {
        "name": "webhook",
        "image": o.image,
        "imagePullPolicy": "Always",
        "command": ["dutyguard"],
        "args": args,
        "ports": [{"name": "https", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": probe_port, "scheme": "HTTPS"},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": probe_port, "scheme": "HTTPS"},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "resources": {
            "requests": {"cpu": "250m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "256Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
    }
    selector = _selector(o)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(o),
        "spec": {
            "replicas": o.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": _labels(o)},
                "spec": {
                    "serviceAccountName": o.name,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": UID,
                        "runAsGroup": UID,
                        "fsGroup": UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector},
                        }
                    ],
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def _api_access_volume() -> Doc:
    # What the kubelet would automount, made explicit: automounting stays off for the pod, so
    # only this container gets a token, short-lived and re-read when the API server refuses it.
    return {
        "name": "kube-api-access",
        "projected": {
            "defaultMode": 0o440,
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
        },
    }


def namespace_reader_role(o: ManifestOptions) -> Doc:
    """Read-only on namespaces, nothing else: what ``--namespace-labels`` lists and watches."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(o, f"{o.name}-namespace-reader", namespaced=False),
        "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}],
    }


def namespace_reader_binding(o: ManifestOptions) -> Doc:
    name = f"{o.name}-namespace-reader"
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(o, name, namespaced=False),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": o.name, "namespace": o.namespace}],
    }


def service(o: ManifestOptions) -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(o),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(o),
            "ports": [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}],
        },
    }


def disruption_budget(o: ManifestOptions) -> Doc:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(o),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": _selector(o)}},
    }


def network_policy(o: ManifestOptions) -> Doc:
    # The API server reaches the webhook from addresses no selector can name (control plane
    # nodes, often host network), so ingress is open on the webhook port only. Egress: DNS and
    # HTTPS (the control plane, the API server), nothing else.
    egress: list[Doc] = [
        {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
        {"ports": [{"protocol": "TCP", "port": 443}]},
    ]
    if o.namespace_labels:
        # Most network plugins apply policy after the Service is translated: the API server's own
        # port (6443 on kubeadm clusters), not the kubernetes Service's 443.
        egress.append({"ports": [{"protocol": "TCP", "port": 6443}]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(o),
        "spec": {
            "podSelector": {"matchLabels": _selector(o)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": PORT}]}],
            "egress": egress,
        },
    }


def webhook_rules() -> list[Doc]:
    """One rule per API group, covering every kind the webhook evaluates."""
    by_group: dict[str, list[str]] = {}
    for (group, _kind), resource in EVALUATED_KINDS.items():
        by_group.setdefault(group, []).append(resource)
    by_group[""].append("pods/ephemeralcontainers")
    return [
        {
            "apiGroups": [group],
            "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": resources,
            "scope": "Namespaced",
        }
        for group, resources in by_group.items()
    ]


def webhook_configuration(o: ManifestOptions) -> Doc:
    client: Doc = {"service": {"name": o.name, "namespace": o.namespace, "path": VALIDATE_PATH, "port": 443}}
    if o.ca_bundle is not None:
        client["caBundle"] = _b64(o.ca_bundle)
    exempt = list(dict.fromkeys((o.namespace, *o.exempt_namespaces)))
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": _meta(o, namespaced=False),
        "webhooks": [
            {
                "name": WEBHOOK_NAME,
                "admissionReviewVersions": ["v1"],
                "clientConfig": client,
                "rules": webhook_rules(),
                "failurePolicy": o.failure_policy,
                "matchPolicy": "Equivalent",
                "sideEffects": "None",
                "timeoutSeconds": o.timeout_seconds,
                "namespaceSelector": {
                    "matchExpressions": [
                        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": exempt}
                    ]
                },
            }
        ],
    }


def tls_secret(o: ManifestOptions) -> Doc:
    assert o.tls_cert is not None
    assert o.tls_key is not None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(o, f"{o.name}-tls"),
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": _b64(o.tls_cert), "tls.key": _b64(o.tls_key)},
    }


def trust_config_map(o: ManifestOptions) -> Doc:
    assert o.trust_key is not None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(o, f"{o.name}-trust"),
        "data": {"control-plane.pub": o.trust_key.decode("utf-8")},
    }


def manifests(o: ManifestOptions) -> list[Doc]:
    """Every object, in the order ``kubectl apply`` needs them."""
    _check(o)
    docs = [namespace(o), service_account(o)]
    if o.namespace_labels:
        docs += [namespace_reader_role(o), namespace_reader_binding(o)]
    if o.tls_cert is not None:
        docs.append(tls_secret(o))
    if o.trust_key is not None and o.control_plane:
        docs.append(trust_config_map(o))
    docs += [deployment(o), service(o), disruption_budget(o), network_policy(o), webhook_configuration(o)]
    return docs


def render(docs: list[Doc]) -> str:
    import yaml

    return "".join("---\n" + yaml.safe_dump(d, sort_keys=False, default_flow_style=False) for d in docs)
