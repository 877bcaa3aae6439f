"""The Kubernetes manifests hold (issue 18, item 3): kustomize builds the base and every overlay,
every object is valid for the newest Kubernetes that kubernetes-validate knows (strict: no
unknown field), the dev overlay's Strimzi and CloudNativePG resources are valid for the
operators' CRDs (deploy/local/install.sh puts them in .local/crds), and the properties
deploy/k8s/README.md promises: probes, requests and limits, a locked-down securityContext, an
HPA per API, PDBs, NetworkPolicies, pinned images, migrations as Jobs. Needs kubectl
(`kubectl kustomize`, no cluster)."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from misp_platform.testing import load_script

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
LAYERS = {"base": K8S / "base", "prod": K8S / "overlays" / "prod",
          "dev": K8S / "overlays" / "dev"}
CRDS = ROOT / ".local" / "crds"
API_PORTS: dict[str, int] = load_script(ROOT / "deploy" / "gateway" / "render.py",
                                        "gateway_render_k8s").load_services()
SERVICES = list(API_PORTS)
OPERATOR_GROUPS = ("kafka.strimzi.io", "postgresql.cnpg.io")
OPS_PORT = 9100


def _kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not installed: these tests need it (they never skip)"
    done = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict[str, Any]]]:
    return {name: _kustomize(path) for name, path in LAYERS.items()}


def _of(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "Job")]


def _name(d: dict[str, Any]) -> str:
    return str(d["metadata"]["name"])


# ---- schemas ------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", list(LAYERS))
def test_every_object_is_valid_kubernetes(layer: str,
                                          built: dict[str, list[dict[str, Any]]]) -> None:
    version = kubernetes_validate.latest_version()
    checked = 0
    for doc in built[layer]:
        if doc["apiVersion"].split("/")[0] in OPERATOR_GROUPS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{layer}: {doc['kind']} {_name(doc)}: {e.message} at {list(e.path)}")
        checked += 1
    assert checked > 60


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the served version's openAPIV3Schema of every CRD in .local/crds."""
    files = sorted(CRDS.glob("*/*.yaml"))
    assert files, (f"no CRDs in {CRDS}: run deploy/local/install.sh (it fetches Strimzi's and "
                   "CloudNativePG's)")
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in files:
        for crd in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    key = (f"{crd['spec']['group']}/{version['name']}",
                           crd["spec"]["names"]["kind"])
                    out[key] = version["schema"]["openAPIV3Schema"]
    return out


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused where the CRD would prune them (as kubectl's
    strict field validation refuses them), and `nullable` honoured."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


def test_operator_resources_are_valid_for_their_crds(
        built: dict[str, list[dict[str, Any]]]) -> None:
    schemas = _crd_schemas()
    custom = [d for d in built["dev"] if d["apiVersion"].split("/")[0] in OPERATOR_GROUPS]
    kinds = {d["kind"] for d in custom}
    assert {"Kafka", "KafkaNodePool", "KafkaUser", "KafkaTopic", "Cluster", "Database"} <= kinds
    for doc in custom:
        key = (doc["apiVersion"], doc["kind"])
        assert key in schemas, f"no served CRD version for {key} in {CRDS}"
        schema = _strict(copy.deepcopy(schemas[key]))
        schema.setdefault("properties", {})["metadata"] = {"type": "object"}  # the server's
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc),
                        key=lambda e: list(e.path))
        assert not errors, (f"{doc['kind']} {_name(doc)}: "
                            + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5]))
    assert not [d for d in built["base"] + built["prod"]
                if d["apiVersion"].split("/")[0] in OPERATOR_GROUPS]


# ---- what every workload has ----------------------------------------------------------------


@pytest.mark.parametrize("layer", list(LAYERS))
def test_every_container_has_resources_and_a_locked_down_security_context(
        layer: str, built: dict[str, list[dict[str, Any]]]) -> None:
    for d in _workloads(built[layer]):
        pod = d["spec"]["template"]["spec"]
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0 and sc["runAsGroup"] > 0, (
            _name(d))
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, _name(d)
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), _name(d)
        writable = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for c in pod.get("initContainers", []) + pod["containers"]:
            where = (_name(d), c["name"])
            csc = c["securityContext"]
            assert csc["readOnlyRootFilesystem"] is True, where
            assert csc["allowPrivilegeEscalation"] is False, where
            assert csc["capabilities"]["drop"] == ["ALL"], where
            assert not csc.get("capabilities", {}).get("add"), where
            assert not csc.get("privileged"), where
            assert csc.get("runAsUser", sc["runAsUser"]) != 0, where
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][part]), (where, part)
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert mounts.get("/tmp") in writable, where  # the root filesystem is read-only


@pytest.mark.parametrize("layer", list(LAYERS))
def test_every_long_running_role_has_liveness_and_readiness(
        layer: str, built: dict[str, list[dict[str, Any]]]) -> None:
    roles = set()
    for d in _of(built[layer], "Deployment"):
        labels = d["spec"]["template"]["metadata"]["labels"]
        role = labels.get("app.kubernetes.io/component")
        [c] = d["spec"]["template"]["spec"]["containers"]
        roles.add(role)
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert probe in c, (_name(d), probe)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        if role == "api":  # their HTTP health endpoints
            assert c["readinessProbe"]["httpGet"]["path"] in ("/ready", "/console/health")
            assert c["livenessProbe"]["httpGet"]["path"] in ("/health", "/console/health")
            assert c["livenessProbe"]["httpGet"]["port"] == "http" and "http" in ports
        elif _name(d) != "gateway":  # the ops port (misp_platform.ops_port)
            env = {e["name"]: e.get("value") for e in c["env"]}
            assert env["MISP_METRICS_PORT"] == str(ports["metrics"]) == str(OPS_PORT), _name(d)
            assert env["MISP_METRICS_HOST"] == "0.0.0.0", _name(d)  # the kubelet's probes
            for probe in ("livenessProbe", "readinessProbe"):
                assert c[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, _name(d)
    assert {"api", "relay", "consume", "worker", "scheduler", "detect"} <= roles


@pytest.mark.parametrize("layer", list(LAYERS))
def test_images_are_pinned(layer: str, built: dict[str, list[dict[str, Any]]]) -> None:
    for d in _workloads(built[layer]):
        pod = d["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            image = c["image"]
            assert not image.endswith(":latest"), (_name(d), image)
            assert "@sha256:" in image or ":" in image.rsplit("/", 1)[-1], (_name(d), image)


@pytest.mark.parametrize("layer", list(LAYERS))
def test_migrations_run_as_a_job_per_service_and_never_in_an_api_replica(
        layer: str, built: dict[str, list[dict[str, Any]]]) -> None:
    for d in _of(built[layer], "Deployment"):
        pod = d["spec"]["template"]["spec"]
        assert not pod.get("initContainers"), _name(d)
        for c in pod["containers"]:
            assert "migrate" not in c.get("args", []), _name(d)
    jobs = {_name(j): j for j in _of(built[layer], "Job")}
    assert set(jobs) == {f"{svc}-migrate" for svc in SERVICES}
    for svc in SERVICES:
        [c] = jobs[f"{svc}-migrate"]["spec"]["template"]["spec"]["containers"]
        assert c["args"] == ["python", "-m", svc, "migrate"]
        refs = {e["secretRef"]["name"] for e in c["envFrom"] if "secretRef" in e}
        assert refs == {"misp-secrets", f"misp-{svc}-credentials"}


# ---- scaling, disruptions, network -------------------------------------------------------------


@pytest.mark.parametrize("layer", list(LAYERS))
def test_every_api_scales_on_cpu_and_keeps_one_replica_through_disruptions(
        layer: str, built: dict[str, list[dict[str, Any]]]) -> None:
    docs = built[layer]
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in _of(docs, "HorizontalPodAutoscaler")}
    pdbs = _of(docs, "PodDisruptionBudget")
    for d in _of(docs, "Deployment"):
        labels = d["spec"]["selector"]["matchLabels"]
        covering = [p for p in pdbs if p["spec"]["selector"]["matchLabels"] == labels]
        if labels.get("app.kubernetes.io/component") == "api":
            hpa = hpas[_name(d)]
            assert hpa["apiVersion"] == "autoscaling/v2"
            assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
            [metric] = hpa["spec"]["metrics"]
            assert metric["resource"]["name"] == "cpu"
            assert hpa["spec"]["minReplicas"] >= 2 and d["spec"]["replicas"] >= 2
            [pdb] = covering
            assert pdb["spec"]["minAvailable"] == 1
        elif d["spec"]["replicas"] > 1:
            assert len(covering) == 1, _name(d)
        else:
            assert not covering, _name(d)  # a budget on one replica blocks every drain
    assert {f"{svc}-api" for svc in SERVICES} <= set(hpas)


def _policies(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {_name(p): p["spec"] for p in _of(docs, "NetworkPolicy")}


@pytest.mark.parametrize("layer", list(LAYERS))
def test_network_policies_deny_by_default_and_let_only_the_gateway_reach_the_apis(
        layer: str, built: dict[str, list[dict[str, Any]]]) -> None:
    policies = _policies(built[layer])
    deny = policies["default-deny-ingress"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"]
    assert deny["ingress"] == []
    # who may reach an API pod: the gateway, and the settings service (its diagnostics report)
    api_ingress = [p for p in policies.values() if "Ingress" in p["policyTypes"]
                   and "api" in str(p["podSelector"])]
    sources = [peer for p in api_ingress for rule in p["ingress"] for peer in rule["from"]]
    assert sources == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}},
                       {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "settings"}}}]
    settings = policies["apis-from-settings"]["podSelector"]
    assert _services_only(settings)
    gateway = policies["gateway-from-anywhere"]
    assert [r.get("from") for r in gateway["ingress"]] == [None]  # from anywhere
    assert {p["port"] for p in gateway["ingress"][0]["ports"]} == {8080, 8443}
    # egress: name resolution for every pod, the servers for the services (the overlays)
    assert policies["egress-dns"]["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/part-of": "misp-admin-plane"}}
    if layer != "base":
        data = policies["misp-egress-data"]
        assert data["podSelector"]["matchExpressions"] == [
            {"key": "app.kubernetes.io/name", "operator": "In", "values": SERVICES}]
        ports = {p["port"] for rule in data["egress"] for p in rule["ports"]}
        assert ports == {9092, 5432}


def _services_only(selector: dict[str, Any]) -> bool:
    """The six services' pods, not the console's."""
    [expression] = selector["matchExpressions"]
    return "console" not in expression["values"] and set(expression["values"]) == set(SERVICES)


def test_the_gateway_is_exposed_by_an_ingress_speaking_https_to_it(
        built: dict[str, list[dict[str, Any]]]) -> None:
    [ingress] = _of(built["prod"], "Ingress")
    assert ingress["metadata"]["annotations"][
        "nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"
    [tls] = ingress["spec"]["tls"]
    assert tls["secretName"] == "misp-gateway-tls"
    [rule] = ingress["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "gateway", "port": {"name": "https"}}


# ---- the dev overlay's servers ----------------------------------------------------------------


def test_dev_kafka_users_carry_the_plans_acls(built: dict[str, list[dict[str, Any]]]) -> None:
    """Each KafkaUser's ACLs, expanded back to the plan's lines, are that user's lines of
    deploy/docker/kafka-security.plan (the principal renamed misp_<svc> -> misp-<svc>: a
    Kubernetes name has no `_`)."""
    ops = {"Read": "READ", "Write": "WRITE", "Create": "CREATE", "Describe": "DESCRIBE",
           "DescribeConfigs": "DESCRIBE_CONFIGS", "IdempotentWrite": "IDEMPOTENT_WRITE"}
    plan = [line.split()[1:] for line in (ROOT / "deploy" / "docker" / "kafka-security.plan")
            .read_text(encoding="utf-8").splitlines() if line.startswith("acl ")]
    users = {_name(u): u for u in _of(built["dev"], "KafkaUser")}
    assert set(users) == {f"misp-{svc}" for svc in SERVICES}
    for svc in SERVICES:
        spec = users[f"misp-{svc}"]["spec"]
        assert spec["authentication"]["type"] == "scram-sha-512"
        assert spec["authentication"]["password"]["valueFrom"]["secretKeyRef"] == {
            "name": f"misp-{svc}-credentials", "key": "MISP_KAFKA_PASSWORD"}
        assert spec["authorization"]["type"] == "simple"
        lines = set()
        for acl in spec["authorization"]["acls"]:
            res = acl["resource"]
            pattern = {"literal": "LITERAL", "prefix": "PREFIXED"}[res.get("patternType",
                                                                            "literal")]
            name = res.get("name", "kafka-cluster")
            for op in acl["operations"]:
                lines.add((res["type"].upper(), pattern, name, ops[op]))
        assert lines == {tuple(a[1:]) for a in plan if a[0] == f"User:misp_{svc}"}, svc
    [kafka] = _of(built["dev"], "Kafka")
    [listener] = kafka["spec"]["kafka"]["listeners"]
    assert listener["authentication"] == {"type": "scram-sha-512"}
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    [pool] = _of(built["dev"], "KafkaNodePool")
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    topics = {_name(t) for t in _of(built["dev"], "KafkaTopic")}
    named = {a[3] for a in plan if a[1] == "TOPIC" and a[2] == "LITERAL"}
    assert topics == named
    [config] = [c for c in _of(built["dev"], "ConfigMap") if _name(c) == "misp-env"]
    assert config["data"]["MISP_KAFKA_BOOTSTRAP_SERVERS"] == "misp-kafka-kafka-bootstrap:9092"


def test_dev_postgres_makes_each_role_and_database_declaratively(
        built: dict[str, list[dict[str, Any]]]) -> None:
    [cluster] = _of(built["dev"], "Cluster")
    roles = {r["name"]: r for r in cluster["spec"]["managed"]["roles"]}
    assert set(roles) == {f"misp_{svc}" for svc in SERVICES}
    for svc in SERVICES:
        role = roles[f"misp_{svc}"]
        assert role["login"] is True and role["ensure"] == "present"
        assert not role.get("superuser") and not role.get("createdb")
        assert role["passwordSecret"] == {"name": f"misp-{svc}-postgres"}
    databases = {d["spec"]["name"]: d["spec"] for d in _of(built["dev"], "Database")}
    assert databases == {f"misp_{svc}": {"name": f"misp_{svc}", "owner": f"misp_{svc}",
                                         "ensure": "present",
                                         "cluster": {"name": cluster["metadata"]["name"]}}
                         for svc in SERVICES}
    hba = cluster["spec"]["postgresql"]["pg_hba"]
    for svc in SERVICES:  # its own database alone
        assert hba.index(f"host misp_{svc} misp_{svc} all scram-sha-256") < hba.index(
            f"host all misp_{svc} all reject")


def test_the_committed_manifests_are_generated() -> None:
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "python"),
                           str(ROOT / "deploy" / "generate.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_every_invocation_is_on_one_line_for_the_operator_commands_test(
        built: dict[str, list[dict[str, Any]]]) -> None:
    """tests/cli/test_operator_commands.py finds `[python, -m, <service>, ...]` in the files."""
    text = "".join((K8S / "base" / name).read_text(encoding="utf-8")
                   for name in ("services.yaml", "migrations.yaml"))
    assert text.count("args: [python, -m, ") == len(_workloads(built["base"])) - 1  # the gateway
