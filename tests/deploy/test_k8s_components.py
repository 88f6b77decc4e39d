"""The components as the rendered overlays carry them: the HPA alone owns the replica count, the Ingresses route
only the API over TLS, Pod Identity's region and service account, the proxy's NO_PROXY as ccweb reads it, the
cluster-keys sidecar, and the guard on the policy ConfigMap."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from ccweb.config import parse_config
from ccweb_helper.proxy import choose
from deploy.k8s import (
    BASE,
    KUBE,
    OVERLAY,
    OVERLAYS,
    PRIVATE,
    ROOT,
    Object,
    env,
    main_container,
    of_kind,
    rel,
    render,
    the,
)

IRSA = "eks.amazonaws.com/role-arn"
ALL = [BASE, *OVERLAYS]


@cache
def _rendered(directory: Path) -> tuple[Object, ...]:
    return tuple(render(directory))


def rendered(directory: Path) -> list[Object]:
    """The objects ``kubectl kustomize directory`` renders, rendered once, a copy each time (tests mutate them)."""
    return copy.deepcopy(list(_rendered(directory)))


# -- error 5: the HPA owns the count ------------------------------------------------------------------------


def replica_findings(docs: list[Object]) -> list[str]:
    """Deployments an HPA scales that also fix their own count (every apply or sync resets it)."""
    scaled = {(h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"])
              for h in of_kind(docs, "HorizontalPodAutoscaler")}
    found = [f"Deployment/{d['metadata']['name']} has spec.replicas" for d in of_kind(docs, "Deployment")
             if ("Deployment", d["metadata"]["name"]) in scaled and "replicas" in d["spec"]]
    names = {d["metadata"]["name"] for d in of_kind(docs, "Deployment")}
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    found += [f"HPA/{h['metadata']['name']} has no Deployment to scale" for h in hpas
              if h["spec"]["scaleTargetRef"]["name"] not in names]
    return found


@pytest.mark.parametrize("directory", ALL, ids=[rel(d) for d in ALL])
def test_no_fixed_replicas_where_the_hpa_scales(directory: Path) -> None:
    docs = rendered(directory)
    assert replica_findings(docs) == []
    (hpa,) = of_kind(docs, "HorizontalPodAutoscaler")
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    the(docs, "Deployment")["spec"]["replicas"] = 3
    assert replica_findings(docs), "a fixed count beside the HPA is caught"


# -- TLS in: the Ingresses ----------------------------------------------------------------------------------


def ingress_findings(docs: list[Object]) -> list[str]:
    """What is wrong with how the Ingress reaches the pods: a backend that is not the Service's API port, a
    host without TLS, a Service that exposes the metrics port."""
    found = []
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    for service in services.values():
        if service["metadata"]["name"] == "ccweb-metrics":  # monitoring's, for its ServiceMonitor: never routed (below)
            continue
        found += [f"Service/{service['metadata']['name']} exposes {p['targetPort']}" for p in service["spec"]["ports"]
                  if p["targetPort"] not in ("http", 8080)]
    for ingress in of_kind(docs, "Ingress"):
        spec = ingress["spec"]
        if "defaultBackend" in spec:
            found.append("a defaultBackend routes what no rule names")
        tls_hosts = {h for t in spec.get("tls", []) for h in t.get("hosts", [])}
        for rule in spec.get("rules", []):
            if rule.get("host") not in tls_hosts:
                found.append(f"{rule.get('host')}: no TLS")
            for path in rule["http"]["paths"]:
                backend = path["backend"].get("service", {})
                target = services.get(backend.get("name", ""))
                ports = {p.get("name"): p for p in target["spec"]["ports"]} if target else {}
                port = backend.get("port", {})
                chosen: Object | None = ports.get(port["name"]) if "name" in port else next(
                    (p for p in ports.values() if p["port"] == port.get("number")), None)
                if chosen is None or chosen["targetPort"] != "http":
                    found.append(f"{rule.get('host')}{path['path']}: not the Service's API port")
    return found


@pytest.mark.parametrize("directory", OVERLAYS, ids=[rel(d) for d in OVERLAYS])
def test_the_ingress_routes_only_the_api_over_tls_to_the_policys_url(directory: Path) -> None:
    docs = rendered(directory)
    assert ingress_findings(docs) == []
    (ingress,) = of_kind(docs, "Ingress")
    hosts = {r["host"] for r in ingress["spec"]["rules"]}
    policy = parse_config(yaml.safe_load(the(docs, "ConfigMap")["data"]["policy.yaml"]))
    for url in filter(None, (policy.web.public_url, policy.ci_audience)):
        assert urlsplit(url).scheme == "https" and urlsplit(url).hostname in hosts, url


def _metrics_backend(docs: list[Object]) -> None:
    the(docs, "Service", "ccweb")["spec"]["ports"].append({"name": "metrics", "port": 9090, "targetPort": "metrics"})
    the(docs, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] = {"name": "metrics"}


def _no_tls(docs: list[Object]) -> None:
    the(docs, "Ingress")["spec"]["tls"] = []


def _default_backend(docs: list[Object]) -> None:
    the(docs, "Ingress")["spec"]["defaultBackend"] = {"service": {"name": "ccweb", "port": {"name": "http"}}}


def _another_service(docs: list[Object]) -> None:
    the(docs, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = "other"


INGRESS_MUTATIONS: dict[str, Callable[[list[Object]], None]] = {
    "routes-the-metrics-port": _metrics_backend, "no-tls": _no_tls, "default-backend": _default_backend,
    "another-service": _another_service,
}


@pytest.mark.parametrize("mutate", INGRESS_MUTATIONS.values(), ids=INGRESS_MUTATIONS.keys())
def test_a_wrong_ingress_is_caught(mutate: Callable[[list[Object]], None]) -> None:
    docs = rendered(OVERLAY)
    mutate(docs)
    assert ingress_findings(docs)


def test_the_alb_serves_https_only_with_a_modern_policy_and_checks_healthz() -> None:
    docs = rendered(OVERLAY)
    ingress = the(docs, "Ingress")
    notes = ingress["metadata"]["annotations"]
    prefix = "alb.ingress.kubernetes.io/"
    assert ingress["spec"]["ingressClassName"] == "alb"
    assert notes[prefix + "target-type"] == "ip"
    assert notes[prefix + "ssl-policy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert {"HTTPS": 443} in yaml.safe_load(notes[prefix + "listen-ports"])
    assert all(p == {"HTTPS": 443} or notes.get(prefix + "ssl-redirect") == "443"
               for p in yaml.safe_load(notes[prefix + "listen-ports"])), "plain http only as a redirect"
    assert (notes[prefix + "healthcheck-path"], notes[prefix + "healthcheck-port"]) == ("/healthz", "traffic-port")
    region = main_container(the(docs, "Deployment"))["image"].split(".")[3]  # <account>.dkr.ecr.<region>.…
    assert re.fullmatch(rf"arn:aws:acm:{region}:[0-9]{{12}}:certificate/[0-9a-f-]{{36}}",
                        notes[prefix + "certificate-arn"]), "an ACM certificate in the load balancer's region"


def test_nginx_redirects_to_https_with_the_certificate_from_a_secret() -> None:
    ingress = the(rendered(PRIVATE), "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
    assert all(t.get("secretName") for t in ingress["spec"]["tls"])


# -- Pod Identity (error 3) ---------------------------------------------------------------------------------


def test_pod_identity_sets_the_region_and_drops_the_irsa_annotation() -> None:
    docs = rendered(PRIVATE)
    account = the(docs, "ServiceAccount")
    assert not any(k.startswith("eks.amazonaws.com/") for k in account["metadata"].get("annotations", {}))
    container = main_container(the(docs, "Deployment"))
    region = container["image"].split(".")[3]
    variables = env(container)
    assert variables["AWS_REGION"] == variables["AWS_DEFAULT_REGION"] == region, "Pod Identity sets no region"


def test_irsa_keeps_its_annotation() -> None:
    docs = rendered(OVERLAY)
    assert the(docs, "ServiceAccount")["metadata"]["annotations"][IRSA]
    assert not of_kind([o for o in docs if o["metadata"]["name"] == "ccweb-pod-identity"], "NetworkPolicy")


# -- the egress proxy: NO_PROXY as ccweb reads it (error/gap: private clusters) ------------------------------

DIRECT = ["sts.eu-west-1.amazonaws.com", "vpce-0a1b2c3d4e5f60718-abcdefgh.sts.eu-west-1.vpce.amazonaws.com",
          "169.254.170.23", "fd00:ec2::23", "169.254.169.254", "kubernetes.default.svc",
          "kubernetes.default.svc.cluster.local", "ccweb.ccweb.svc", "172.20.0.1", "127.0.0.1", "localhost"]
PROXIED = ["example-corp.okta.com", "gitlab.com", "token.actions.githubusercontent.com",
           "cognito-idp.eu-west-1.amazonaws.com", "sts.amazonaws.com", "203.0.113.7"]


def proxy_env() -> dict[str, str]:
    return env(main_container(the(rendered(PRIVATE), "Deployment")))


@pytest.mark.parametrize("host", DIRECT)
def test_no_proxy_sends_the_vpc_endpoints_the_agent_and_the_cluster_directly(host: str) -> None:
    assert choose("https", host, 443, proxy_env()) is None


@pytest.mark.parametrize("host", PROXIED)
def test_the_identity_providers_go_through_the_proxy(host: str) -> None:
    choice = choose("https", host, 443, proxy_env())
    assert choice is not None and choice.variable == "HTTPS_PROXY"


def test_the_network_policy_lets_the_pods_reach_the_proxys_port() -> None:
    docs = rendered(PRIVATE)
    port = urlsplit(proxy_env()["HTTPS_PROXY"]).port
    (policy,) = [p for p in of_kind(docs, "NetworkPolicy") if p["metadata"]["name"] == "ccweb-egress-proxy"]
    assert [p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]] == [port]


# -- the cluster's keys through the API server (error 7) ----------------------------------------------------


def sidecar() -> Object:
    containers: list[Object] = the(rendered(PRIVATE), "Deployment")["spec"]["template"]["spec"]["initContainers"]
    (found,) = containers
    return found


def flags(container: Object) -> dict[str, str]:
    return dict(a.removeprefix("--").split("=", 1) for a in container["args"][1:])


@pytest.mark.parametrize(("path", "accepted"), [
    ("/openid/v1/jwks", True), ("/.well-known/openid-configuration", True), ("/api/v1/secrets", False),
    ("/api/v1/namespaces/ccweb/configmaps", False), ("/openid/v1/jwks/../../api", False), ("/xopenid/v1/jwks", False),
])
def test_the_sidecar_forwards_the_discovery_paths_only(path: str, accepted: bool) -> None:
    patterns = flags(sidecar())["accept-paths"].split(",")
    assert any(re.search(p, path) for p in patterns) is accepted


def test_the_sidecar_is_kubectl_proxy_on_loopback_where_the_policy_reads_the_keys() -> None:
    container = sidecar()
    assert container["restartPolicy"] == "Always", "a native sidecar: up before ccweb asks it for keys"
    assert re.fullmatch(r"registry\.k8s\.io/kubectl:v1\.[0-9]+\.[0-9]+(@sha256:[0-9a-f]{64})?", container["image"])
    assert container["args"][0] == "proxy" and flags(container)["address"] == "127.0.0.1"
    policy = parse_config(yaml.safe_load(the(rendered(PRIVATE), "ConfigMap")["data"]["policy.yaml"]))
    uris = [i.jwks_uri for i in policy.issuers if i.jwks_uri and urlsplit(i.jwks_uri).hostname == "127.0.0.1"]
    assert uris, "the private overlay's policy reads the cluster's keys through the sidecar"
    assert all(urlsplit(u).port == int(flags(container)["port"]) for u in uris)


# -- the policy guard (gap 4) -------------------------------------------------------------------------------

CEL = re.compile(r"request\.userInfo\.username == '(system:serviceaccount:[a-z0-9-]+:[a-z0-9-]+)'")


def guard_findings(docs: list[Object]) -> list[str]:
    """Where the guard's parts disagree: the admission policy's one allowed user is the RoleBinding's service
    account, it matches the ConfigMap ccweb-policy in the overlay's namespace for every change, and its binding
    denies. (CEL cannot be run here: the expression is checked for its shape only.)"""
    policy, binding = the(docs, "ValidatingAdmissionPolicy"), the(docs, "ValidatingAdmissionPolicyBinding")
    configmap = the(docs, "ConfigMap")
    (subject,) = the(docs, "RoleBinding")["subjects"]
    spec = policy["spec"]
    found = []
    (validation,) = spec["validations"]
    allowed = CEL.fullmatch(validation["expression"])
    if allowed is None or allowed[1] != f"system:serviceaccount:{subject['namespace']}:{subject['name']}":
        found.append(f"the admission policy allows {validation['expression']!r}, not the RoleBinding's subject")
    (rule,) = spec["matchConstraints"]["resourceRules"]
    if set(rule["operations"]) != {"CREATE", "UPDATE", "DELETE"} or rule["resources"] != ["configmaps"]:
        found.append(f"the admission policy matches {rule['operations']} on {rule['resources']}")
    conditions = [c["expression"] for c in spec.get("matchConditions", [])]  # the name, in the objects: a
    guarded = ("(request.operation == 'DELETE' ? oldObject : object).metadata.name == "  # deletecollection has
               f"'{configmap['metadata']['name']}'")  # no request name (tests/deploy/test_k8s_guard.py)
    if rule.get("resourceNames") or conditions != [guarded]:
        found.append(f"the admission policy guards {rule.get('resourceNames')} {conditions}")
    namespace = spec["matchConstraints"].get("namespaceSelector", {}).get("matchLabels", {})
    if namespace != {"kubernetes.io/metadata.name": configmap["metadata"]["namespace"]}:
        found.append(f"the admission policy watches the namespace {namespace}")
    if spec.get("failurePolicy") != "Fail" or binding["spec"]["validationActions"] != ["Deny"]:
        found.append("the guard only warns or fails open")
    if binding["spec"]["policyName"] != policy["metadata"]["name"]:
        found.append("the binding names another policy")
    (write,) = [r for r in the(docs, "Role")["rules"] if "update" in r["verbs"]]
    if write.get("resourceNames") != [configmap["metadata"]["name"]]:
        found.append("the Role lets the controller update other ConfigMaps")
    return found


def test_only_the_gitops_controller_may_change_the_policy() -> None:
    assert guard_findings(rendered(OVERLAY)) == []


def _other_subject(docs: list[Object]) -> None:
    the(docs, "RoleBinding")["subjects"][0]["name"] = "kustomize-controller"


def _loose_cel(docs: list[Object]) -> None:
    the(docs, "ValidatingAdmissionPolicy")["spec"]["validations"][0]["expression"] = (
        "request.userInfo.username.startsWith('system:serviceaccount:argocd:')")


def _no_delete(docs: list[Object]) -> None:
    (rule,) = the(docs, "ValidatingAdmissionPolicy")["spec"]["matchConstraints"]["resourceRules"]
    rule["operations"].remove("DELETE")


def _warn_only(docs: list[Object]) -> None:
    the(docs, "ValidatingAdmissionPolicyBinding")["spec"]["validationActions"] = ["Warn"]


def _other_namespace(docs: list[Object]) -> None:
    the(docs, "ValidatingAdmissionPolicy")["spec"]["matchConstraints"]["namespaceSelector"]["matchLabels"][
        "kubernetes.io/metadata.name"] = "default"


def _role_on_every_configmap(docs: list[Object]) -> None:
    for rule in the(docs, "Role")["rules"]:
        rule.pop("resourceNames", None)


GUARD_MUTATIONS: dict[str, Callable[[list[Object]], None]] = {
    "another-controller": _other_subject, "a-whole-namespace-allowed": _loose_cel, "delete-unguarded": _no_delete,
    "warn-only": _warn_only, "another-namespace": _other_namespace, "role-on-every-configmap": _role_on_every_configmap,
}


@pytest.mark.parametrize("mutate", GUARD_MUTATIONS.values(), ids=GUARD_MUTATIONS.keys())
def test_a_weakened_guard_is_caught(mutate: Callable[[list[Object]], None]) -> None:
    docs = rendered(OVERLAY)
    mutate(docs)
    assert guard_findings(docs)


# -- the guide ----------------------------------------------------------------------------------------------

GUIDE = ROOT / "docs" / "kubernetes.md"


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a document's headings."""
    return {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)}


def test_every_link_from_the_manifests_into_the_guide_has_its_section() -> None:
    known = anchors(GUIDE.read_text(encoding="utf-8"))
    linked = {m for path in KUBE.rglob("*.yaml")
              for m in re.findall(r"docs/kubernetes\.md#([a-z0-9_-]+)", path.read_text(encoding="utf-8"))}
    assert linked and linked <= known, sorted(linked - known)


def test_the_guide_explains_every_no_proxy_entry_of_the_private_overlay() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    entries = proxy_env()["NO_PROXY"].split(",")
    assert [e for e in entries if f"`{e}`" not in guide] == []
