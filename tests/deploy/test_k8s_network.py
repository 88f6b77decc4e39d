"""The rendered overlays' NetworkPolicies, through an evaluator of their rules: into the API port only from the
load balancer, into the metrics port only from Prometheus, out only to DNS, HTTPS, Pod Identity's agent (on
Pod Identity) and the proxy (behind one)."""

from __future__ import annotations

import copy
from functools import cache

import pytest

from deploy.k8s import OVERLAY, PRIVATE, Object, Peer, Pod, admits, of_kind, rel, render, the_pod

ALB = Peer("10.40.1.20")  # an ALB node's address in a public subnet (target-type ip: it connects from there)
NGINX = Peer("10.40.33.4", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx",
                                              "app.kubernetes.io/component": "controller"})
NGINX_WEBHOOK_JOB = Peer("10.40.33.5", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx",
                                                          "app.kubernetes.io/component": "admission-webhook"})
PROMETHEUS = Peer("10.40.50.5", "monitoring", {"app.kubernetes.io/name": "prometheus"})
A_POD = Peer("10.40.40.7", "default", {"app": "web"})  # a pod in a private subnet (VPC CNI: a VPC address)
A_NEIGHBOUR = Peer("10.40.40.8", "ccweb", {"app": "debug"})
INTERNET = Peer("203.0.113.9")
DNS = Peer("172.20.0.10", "kube-system", {"k8s-app": "kube-dns"})
AGENT_V4, AGENT_V6 = Peer("169.254.170.23"), Peer("fd00:ec2::23")
STS_ENDPOINT = Peer("10.40.96.12")  # an STS interface VPC endpoint's address
IDP = Peer("198.51.100.20")  # an identity provider on the internet
PROXY = Peer("10.40.8.10")  # the private overlay's proxy, in its subnet 10.40.8.0/24
HTTP, METRICS = 8080, 9090

# (peer, port, protocol) → admitted?, per overlay and direction
INGRESS: dict[str, list[tuple[str, Peer, int, bool]]] = {
    "example": [
        ("the ALB to the API", ALB, HTTP, True),
        ("the ALB to the metrics port", ALB, METRICS, False),
        ("a pod of the VPC to the API", A_POD, HTTP, False),
        ("the internet to the API", INTERNET, HTTP, False),
        ("Prometheus to the metrics port", PROMETHEUS, METRICS, True),
        ("Prometheus to the API", PROMETHEUS, HTTP, False),
        ("a pod beside it to the API", A_NEIGHBOUR, HTTP, False),
    ],
    "private": [
        ("the ingress-nginx controller to the API", NGINX, HTTP, True),
        ("another ingress-nginx pod to the API", NGINX_WEBHOOK_JOB, HTTP, False),
        ("the controller to the metrics port", NGINX, METRICS, False),
        ("a pod of the VPC to the API", A_POD, HTTP, False),
        ("the internet to the API", INTERNET, HTTP, False),
        ("Prometheus to the metrics port", PROMETHEUS, METRICS, True),
        ("a pod beside it to the metrics port", A_NEIGHBOUR, METRICS, False),
    ],
}
EGRESS: dict[str, list[tuple[str, Peer, int, str, bool]]] = {
    "example": [
        ("DNS over UDP", DNS, 53, "UDP", True),
        ("DNS over TCP", DNS, 53, "TCP", True),
        ("STS and the identity providers over HTTPS", IDP, 443, "TCP", True),
        ("Pod Identity's agent, not needed with IRSA", AGENT_V4, 80, "TCP", False),
        ("plain http out", IDP, 80, "TCP", False),
        ("DNS on another server", INTERNET, 53, "UDP", False),
    ],
    "private": [
        ("DNS over UDP", DNS, 53, "UDP", True),
        ("Pod Identity's agent (IPv4)", AGENT_V4, 80, "TCP", True),
        ("Pod Identity's agent (IPv6)", AGENT_V6, 80, "TCP", True),
        ("Pod Identity's agent on another port", AGENT_V4, 81, "TCP", False),
        ("STS's VPC endpoint over HTTPS", STS_ENDPOINT, 443, "TCP", True),
        ("the proxy's port", PROXY, 3128, "TCP", True),
        ("the identity provider straight out", IDP, 443, "TCP", False),
        ("the proxy on another port", PROXY, 8080, "TCP", False),
    ],
}
DIRS = {"example": OVERLAY, "private": PRIVATE}


@cache
def _rendered(name: str) -> tuple[Object, ...]:
    return tuple(render(DIRS[name]))


def policies(name: str) -> tuple[list[Object], Pod]:
    docs = copy.deepcopy(list(_rendered(name)))
    return of_kind(docs, "NetworkPolicy"), the_pod(docs)


INGRESS_CASES = [(overlay, *case) for overlay, cases in INGRESS.items() for case in cases]
EGRESS_CASES = [(overlay, *case) for overlay, cases in EGRESS.items() for case in cases]


@pytest.mark.parametrize(("overlay", "what", "peer", "port", "expected"), INGRESS_CASES,
                         ids=[f"{c[0]}: {c[1]}" for c in INGRESS_CASES])
def test_ingress(overlay: str, what: str, peer: Peer, port: int, expected: bool) -> None:
    found, pod = policies(overlay)
    assert admits(found, pod, "Ingress", peer, port) is expected, what


@pytest.mark.parametrize(("overlay", "case"), [(c[0], c[1:]) for c in EGRESS_CASES],
                         ids=[f"{c[0]}: {c[1]}" for c in EGRESS_CASES])
def test_egress(overlay: str, case: tuple[str, Peer, int, str, bool]) -> None:
    what, peer, port, protocol, expected = case
    found, pod = policies(overlay)
    assert admits(found, pod, "Egress", peer, port, protocol=protocol) is expected, what


def test_without_the_pod_identity_component_the_agent_is_blocked() -> None:
    """What the issue found: the base's egress (DNS, 443) alone keeps the pods from their credentials."""
    found, pod = policies("private")
    assert admits(found, pod, "Egress", AGENT_V4, 80)
    kept = [p for p in found if p["metadata"]["name"] != "ccweb-pod-identity"]
    assert not admits(kept, pod, "Egress", AGENT_V4, 80)


def test_the_ingress_components_narrow_the_api_port() -> None:
    """Undo the narrowing (the API rule's `from`) and the VPC's pods reach the API again: the cases above fail."""
    for name, peer in (("example", A_POD), ("private", A_POD)):
        found, pod = policies(name)
        (main,) = [p for p in found if p["metadata"]["name"] == "ccweb"]
        main["spec"]["ingress"][0].pop("from")
        assert admits(found, pod, "Ingress", peer, HTTP), rel(DIRS[name])


# -- the evaluator itself -----------------------------------------------------------------------------------

POD = Pod("ccweb", {"app": "ccweb"}, {"http": 8080})


def _policy(spec: Object, namespace: str = "ccweb") -> Object:
    return {"kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": namespace},
            "spec": {"podSelector": {"matchLabels": {"app": "ccweb"}}, **spec}}


def test_no_policy_admits_everything_and_an_empty_one_nothing() -> None:
    assert admits([], POD, "Ingress", INTERNET, 8080)
    assert not admits([_policy({"policyTypes": ["Ingress"]})], POD, "Ingress", INTERNET, 8080)
    assert admits([_policy({"policyTypes": ["Ingress"]})], POD, "Egress", INTERNET, 443)
    assert not admits([_policy({"policyTypes": ["Egress"]})], POD, "Egress", INTERNET, 443)
    assert admits([_policy({"policyTypes": ["Ingress"]}, namespace="other")], POD, "Ingress", INTERNET, 8080)


def test_namespace_and_pod_selectors_in_one_peer_must_both_match() -> None:
    both = _policy({"ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "ingress-nginx"}}, "podSelector": {"matchLabels": {
            "app.kubernetes.io/component": "controller"}}}]}]})
    assert admits([both], POD, "Ingress", NGINX, 8080)
    assert not admits([both], POD, "Ingress", NGINX_WEBHOOK_JOB, 8080)
    assert not admits([both], POD, "Ingress", Peer("10.0.0.1", "default", NGINX.labels), 8080)


def test_a_pod_selector_alone_means_the_policys_namespace_and_ip_blocks_honour_except() -> None:
    same = _policy({"ingress": [{"from": [{"podSelector": {}}]}]})
    assert admits([same], POD, "Ingress", A_NEIGHBOUR, 8080)
    assert not admits([same], POD, "Ingress", A_POD, 8080)
    block = _policy({"ingress": [{"from": [{"ipBlock": {"cidr": "10.40.0.0/16", "except": ["10.40.40.0/24"]}}],
                                  "ports": [{"port": "http"}]}]})
    assert admits([block], POD, "Ingress", ALB, 8080)
    assert not admits([block], POD, "Ingress", A_POD, 8080)
    assert not admits([block], POD, "Ingress", ALB, 9090)
    assert not admits([block], POD, "Ingress", Peer("fd00::1"), 8080)


def test_ports_match_by_number_name_range_and_protocol() -> None:
    ranged = _policy({"egress": [{"ports": [{"port": 3000, "endPort": 3200, "protocol": "TCP"}]}]})
    assert admits([ranged], POD, "Egress", PROXY, 3128)
    assert not admits([ranged], POD, "Egress", PROXY, 3128, protocol="UDP")
    assert not admits([ranged], POD, "Egress", PROXY, 3201)
    named = _policy({"egress": [{"ports": [{"port": "dns", "protocol": "UDP"}]}]})
    assert admits([named], POD, "Egress", DNS, 53, protocol="UDP", peer_ports={"dns": 53})
    assert not admits([named], POD, "Egress", DNS, 53, protocol="UDP")
