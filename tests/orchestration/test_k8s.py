"""deploy/k8s: both overlays render with kubectl's kustomize, and every rendered object
validates against the Kubernetes schemas (kubernetes-validate, strict: an unknown field is
an error), the RabbitMQ operator's RabbitmqCluster against the CRD subset we ship."""

from __future__ import annotations

import base64
import copy
import functools
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils
from kubernetes_validate.utils import latest_version

from collector import config as collector_config
from orchestration.admin.cli import main as admin_main

ROOT = Path(__file__).resolve().parents[2]
CRD_SCHEMA = ROOT / "deploy" / "k8s" / "crds" / "rabbitmqcluster-v1beta1.schema.json"
# kubectl of the machine image (1.32) and the newest release kubernetes-validate knows.
VERSIONS = ("1.32.0", f"{latest_version()}.0")
OVERLAYS = ("county", "province")
Doc = dict[str, Any]


def _kubectl() -> str:
    tool = shutil.which("kubectl")
    if tool is None:
        pytest.skip("kubectl not installed (Debian: kubernetes-client)")
    return tool


def _render(tree: Path, overlay: str) -> list[Doc]:
    out = subprocess.run(
        [_kubectl(), "kustomize", "--load-restrictor", "LoadRestrictionsNone",
         str(tree / "deploy" / "k8s" / "overlays" / overlay)],
        capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The parts of the repository kustomize reads, with Secrets made as the docs say."""
    tmp = tmp_path_factory.mktemp("k8s")
    for part in ("deploy/k8s", "deploy/influxdb", "grafana/provisioning", "grafana/dashboards"):
        shutil.copytree(ROOT / part, tmp / part)
    home, broker = str(tmp / "home"), tmp / "broker"
    assert admin_main(["--home", home, "ca", "init", "--broker-host", "mqtt.county.example"]) == 0
    assert admin_main(["--home", home, "broker-config", "--out", str(broker), "--config-path",
                       "/mosquitto/config", "--data-dir", "/mosquitto/data"]) == 0
    assert admin_main(["--home", home, "account", "add", "collector",
                       "--role", "collector"]) == 0
    for overlay in OVERLAYS:
        assert admin_main(["--home", home, "k8s-secrets", "--out",
                           str(tmp / "deploy/k8s/overlays" / overlay / "secrets")]) == 0
    return tmp


@pytest.fixture(scope="module")
def rendered(tree: Path) -> dict[str, list[Doc]]:
    return {overlay: _render(tree, overlay) for overlay in OVERLAYS}


def _validate(doc: Doc) -> None:
    """Raises on the first problem; every kind must have a schema."""
    if doc["kind"] == "RabbitmqCluster":
        jsonschema.Draft202012Validator(json.loads(CRD_SCHEMA.read_text())).validate(doc)
        return
    for version in VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def test_both_overlays_render_what_the_issue_lists(rendered: dict[str, list[Doc]]) -> None:
    county = {(d["kind"], d["metadata"]["name"]) for d in rendered["county"]}
    for want in [("StatefulSet", "collector"), ("StatefulSet", "influxdb"),
                 ("Deployment", "grafana"), ("Deployment", "mosquitto"),
                 ("PodDisruptionBudget", "collector"), ("Secret", "mosquitto-config"),
                 ("NetworkPolicy", "influxdb-from-collector-and-grafana")]:
        assert want in county
    province = {(d["kind"], d["metadata"]["name"]) for d in rendered["province"]}
    assert ("RabbitmqCluster", "rabbitmq") in province
    assert ("Deployment", "mosquitto") not in province
    sts = next(d for d in rendered["province"] if d["kind"] == "StatefulSet"
               and d["metadata"]["name"] == "collector")
    assert sts["spec"]["replicas"] == 3
    assert all(d["metadata"].get("namespace") == "airgrid" for overlay in rendered.values()
               for d in overlay if d["kind"] != "Namespace")


def test_every_rendered_object_validates_strictly(rendered: dict[str, list[Doc]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # kubernetes-validate reads its (large) definitions file again for every object.
    monkeypatch.setattr(kv_utils, "schema_contents", functools.cache(kv_utils.schema_contents))
    problems = []
    for overlay, docs in rendered.items():
        for doc in docs:
            try:
                _validate(doc)
            except Exception as exc:
                problems.append(f"{overlay}: {doc['kind']}/{doc['metadata']['name']}: {exc}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("kind", "path", "field"), [
    ("StatefulSet", ["spec", "template", "spec", "containers", 0], "livenesProbe"),
    ("NetworkPolicy", ["spec"], "ingres"),
    ("RabbitmqCluster", ["spec", "rabbitmq"], "plugins"),
])
def test_validation_rejects_an_unknown_field(rendered: dict[str, list[Doc]], kind: str,
                                              path: list[str | int], field: str) -> None:
    doc = copy.deepcopy(next(d for d in rendered["province"] if d["kind"] == kind))
    node: Any = doc
    for step in path:
        node = node[step]
    node[field] = {}
    with pytest.raises(jsonschema.ValidationError):
        _validate(doc)


def _refs(docs: list[Doc]) -> Iterator[tuple[str, str, str | None]]:
    """(kind, name, key) of every Secret/ConfigMap a pod template refers to."""
    for d in docs:
        spec = d.get("spec", {}).get("template", {}).get("spec")
        if not spec:
            continue
        for c in spec["containers"]:
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    yield "Secret", ref["name"], ref["key"]
        for v in spec.get("volumes", []):
            if "secret" in v:
                yield "Secret", v["secret"]["secretName"], None
            if "configMap" in v:
                yield "ConfigMap", v["configMap"]["name"], None
            for src in v.get("projected", {}).get("sources", []):
                for item in src["secret"].get("items", []):
                    yield "Secret", src["secret"]["name"], item["key"]


def test_every_secret_and_config_map_a_pod_uses_is_rendered(
        rendered: dict[str, list[Doc]]) -> None:
    # collector-amqp carries the RabbitMQ user the operator makes: docs/deployment.md
    # creates it from the operator's default-user Secret.
    made_on_the_cluster = {"collector-amqp"}
    for docs in rendered.values():
        have = {(d["kind"], d["metadata"]["name"]): d for d in docs}
        for kind, name, key in _refs(docs):
            if name in made_on_the_cluster:
                continue
            assert (kind, name) in have, f"{kind}/{name} is used but not rendered"
            if key is not None:
                assert key in have[(kind, name)]["data"], f"{kind}/{name} has no key {key}"


def test_collector_configs_are_ones_the_collector_accepts(tree: Path, tmp_path: Path,
                                                          rendered: dict[str, list[Doc]]
                                                          ) -> None:
    secrets_dir, state = tmp_path / "secrets", tmp_path / "state"
    secrets_dir.mkdir()
    for name in ("broker_password", "influx_password", "amqp_urls"):
        f = secrets_dir / name
        f.write_text("amqp://airgrid:pw@rabbitmq:5672/%2F" if name == "amqp_urls" else "pw")
        f.chmod(0o600)
    loaded = []
    for overlay in OVERLAYS:
        for toml in sorted((tree / "deploy/k8s/overlays" / overlay).glob("collector-*.toml")):
            text = toml.read_text().replace("/run/secrets/airgrid/", f"{secrets_dir}/")
            f = tmp_path / f"{overlay}-{toml.name}"
            f.write_text(text.replace("/var/lib/airgrid/", f"{state}/"))
            loaded.append(collector_config.load(f))
    county, *province = loaded
    assert county.source == "mqtt" and county.broker.password == "pw"
    assert [c.amqp.collector for c in province] == ["collector-0", "collector-1", "collector-2"]
    assert all(c.amqp.url_list == ["amqp://airgrid:pw@rabbitmq:5672/%2F"] for c in province)
    assert all(c.amqp.ring == province[0].amqp.ring and len(c.amqp.ring) == 3 for c in province)
    # The StatefulSet's replicas and the ring agree: one config file per pod.
    sts = next(d for d in rendered["province"] if d["kind"] == "StatefulSet"
               and d["metadata"]["name"] == "collector")
    assert sts["spec"]["replicas"] == len(province)


def test_only_collector_and_grafana_reach_influxdb(rendered: dict[str, list[Doc]]) -> None:
    for docs in rendered.values():
        policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
        assert any(p["spec"]["podSelector"] == {} and p["spec"]["policyTypes"] == ["Ingress"]
                   and "ingress" not in p["spec"] for p in policies)  # default deny
        influx = [p for p in policies if p["spec"]["podSelector"].get("matchLabels", {}).get(
            "app.kubernetes.io/name") == "influxdb"]
        (only,) = influx
        sources = {s["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                   for rule in only["spec"]["ingress"] for s in rule["from"]}
        assert sources == {"collector", "grafana"}


def test_collector_pod_health_storage_and_secrets(rendered: dict[str, list[Doc]]) -> None:
    sts = next(d for d in rendered["county"] if d["kind"] == "StatefulSet"
               and d["metadata"]["name"] == "collector")
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    assert c["livenessProbe"]["httpGet"]["path"] == c["readinessProbe"]["httpGet"]["path"] \
        == "/healthz"
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "state"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["state"] == "/var/lib/airgrid" and mounts["secrets"] == "/run/secrets/airgrid"
    # Secret files are group-readable (fsGroup) and never world-readable: airgrid/secrets.py
    # refuses a world-readable secret file.
    (projected,) = [v for v in sts["spec"]["template"]["spec"]["volumes"] if "projected" in v]
    assert projected["projected"]["defaultMode"] & 0o007 == 0


def test_images_can_be_put_behind_a_registry_mirror(tree: Path) -> None:
    mirror = "registry.example.cn/airgrid-mirror"
    for overlay in OVERLAYS:
        k = tree / "deploy/k8s/overlays" / overlay / "kustomization.yaml"
        saved = k.read_text()
        doc = yaml.safe_load(saved)
        names = ["influxdb", "grafana/grafana-oss", "airgrid-collector", "eclipse-mosquitto",
                 "rabbitmq"]
        tags = {i["name"]: i for i in doc.get("images", [])}
        doc["images"] = [{**tags.get(n, {}), "name": n, "newName": f"{mirror}/{n}"}
                         for n in names]
        k.write_text(yaml.safe_dump(doc))
        try:
            docs = _render(tree, overlay)
        finally:
            k.write_text(saved)
        images = [c["image"] for d in docs
                  for c in d.get("spec", {}).get("template", {}).get("spec", {}).get(
                      "containers", [])]
        images += [d["spec"]["image"] for d in docs if d["kind"] == "RabbitmqCluster"]
        assert images and all(i.startswith(f"{mirror}/") for i in images), images


def test_k8s_secrets_keep_generated_passwords_and_refresh_broker_files(tree: Path) -> None:
    out = tree / "deploy/k8s/overlays/county/secrets"
    before = json.loads((out / "influxdb-credentials.yaml").read_text())["data"]
    broker = json.loads((out / "mosquitto-config.yaml").read_text())["data"]
    assert "mosquitto.conf" in broker and "server.key" in broker
    home = str(tree / "home")
    assert admin_main(["--home", home, "account", "add", "gov-bus", "--role", "app"]) == 0
    assert admin_main(["--home", home, "k8s-secrets", "--out", str(out)]) == 0
    after = json.loads((out / "influxdb-credentials.yaml").read_text())["data"]
    assert after == before  # made once, kept
    acl = base64.b64decode(json.loads((out / "mosquitto-config.yaml").read_text())["data"][
        "acl-accounts"]).decode()
    assert "gov-bus" in acl
    assert (out / "collector-broker.yaml").stat().st_mode & 0o077 == 0


def _image_builder() -> list[str] | None:
    for tool in ("docker", "podman"):
        path = shutil.which(tool)
        if path and subprocess.run([path, "info"], capture_output=True,
                                   timeout=20, check=False).returncode == 0:
            return [path, "build"]
    path = shutil.which("buildah")
    return [path, "bud"] if path else None


def test_collector_image_builds(tmp_path: Path) -> None:
    builder = _image_builder()
    if builder is None:
        pytest.skip("no working image builder here (docker/podman without a daemon, or "
                    "none, and no buildah): the collector image was not built")
    res = subprocess.run([*builder, "-f", str(ROOT / "deploy/collector.Dockerfile"),
                          "-t", "airgrid-collector:test", str(ROOT)],
                         capture_output=True, text=True, timeout=900, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
