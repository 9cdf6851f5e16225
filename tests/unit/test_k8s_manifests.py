"""infra/k8s/ checked offline, as an operator would before `kubectl apply -k`: every file parses and
is listed, the env names are settings the code reads, the probes hit routes the components serve
on the ports they listen on, the containers run real `callstt` subcommands, the Strimzi topics are
exactly what `callstt topics create` makes, and KEDA scales each consumer group on its own input
topic, never past its partitions.

What the code says comes from the code (the settings object, the typer app, the Faust apps' pages
and tables, project_topics), never from a list kept here. The manifests are read the way
kustomize builds them: the base's `replacements` and `images` applied by `build()` below; with
kubectl installed, `kubectl kustomize` is checked to build the same thing.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from callstt.streams.agents import AGENTS, AgentSpec
from callstt.streams.client.acls import ROLES, grants, strimzi_kafka_user
from callstt.streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
BENCHMARK = ROOT / "docs" / "benchmark.md"
POD_WORKLOADS = ("StatefulSet", "Deployment")


# --- reading the manifests ----------------------------------------------------------------------

def load_file(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomization(directory: Path) -> dict:
    return yaml.safe_load((directory / "kustomization.yaml").read_text())


def get_path(doc: Any, path: str) -> Any:
    for part in path.split("."):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def set_path(doc: Any, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    key = int(last) if isinstance(doc, list) else last
    old = doc[key]  # kustomize refuses a missing target too (without options.create)
    doc[key] = int(value) if isinstance(old, int) and not isinstance(old, bool) else str(value)


def matches(doc: dict, selector: dict) -> bool:
    return all(get_path(doc, "metadata.name" if key == "name" else key) == value for key, value in selector.items())


def build(directory: Path = K8S) -> list[dict]:
    """The base as kustomize builds it: its resources, then its image and replacement transformers
    (the only ones it uses; test_kubectl_kustomize_builds_the_same checks this against kustomize)."""
    spec = kustomization(directory)
    assert set(spec) <= {"apiVersion", "kind", "resources", "images", "replacements"}, \
        "the base uses a kustomize feature build() does not apply"
    docs = [doc for name in spec["resources"] for doc in load_file(directory / name)]
    images = {image["name"]: image for image in spec.get("images", [])}
    for container in (c for doc in docs if doc["kind"] in POD_WORKLOADS for c in containers(doc)):
        image = images.get(container["image"].split(":")[0])
        if image:
            container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    for replacement in spec.get("replacements", []):
        source = replacement["source"]
        [origin] = [doc for doc in docs if matches(doc, {key: source[key] for key in ("kind", "name") if key in source})]
        value = get_path(origin, source["fieldPath"])
        for target in replacement["targets"]:
            chosen = [doc for doc in docs if matches(doc, target["select"])
                      and not any(matches(doc, rejected) for rejected in target.get("reject", []))]
            assert chosen, f"replacement target {target['select']} selects nothing"
            for doc in chosen:
                for path in target["fieldPaths"]:
                    set_path(doc, path, value)
    return docs


def containers(workload: dict) -> list[dict]:
    return workload["spec"]["template"]["spec"]["containers"]


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: list[dict], kind: str, name: str) -> dict:
    [doc] = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    return doc


def setting_names() -> set[str]:
    """Every environment variable the settings object reads (CALLSTT_* and the old service's names)."""
    return {name for f in fields(Settings) for name in f.metadata["env"]}


def container_env(docs: list[dict], container: dict) -> dict[str, str]:
    """What the container's process sees: its ConfigMaps (in order), then its own env (a value
    from a Secret stands in as "<secret>/<key>", which no test can read offline)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(named(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            secret = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = f"{secret['name']}/{secret['key']}"
    return env


# --- what the code says -------------------------------------------------------------------------

@dataclass(frozen=True)
class Component:
    kind: str
    name: str
    subcommand: str
    port_setting: str  # the Settings field of its web port
    app_builder: str  # "module:function" building its Faust app from (settings, load)

    def settings(self, docs: list[dict]) -> Settings:
        [container] = containers(named(docs, self.kind, self.name))
        return Settings.from_env(container_env(docs, container))

    def app(self, settings: Settings):
        """The component's Faust app, as its subcommand builds it (nothing loaded, no broker)."""
        module, function = self.app_builder.split(":")
        return getattr(importlib.import_module(module), function)(settings, lambda: None)

    def input_topic(self, settings: Settings) -> str:
        """The topic its consumer group is scaled on."""
        agent = AGENT_BY_NAME.get(self.subcommand)
        return agent.reads(settings)[0] if agent else settings.audio_topic


def agent_component(agent: AgentSpec) -> Component:
    return Component("Deployment", f"callstt-{agent.name}", agent.name, agent.web_port, agent.app)


AGENT_BY_NAME = {agent.name: agent for agent in AGENTS if agent.pod is not None}
COMPONENTS = (Component("StatefulSet", "callstt-worker", "worker", "web_port", "callstt.streams.worker.app:create_app"),
              *(agent_component(agent) for agent in AGENT_BY_NAME.values()))


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return build()


@pytest.fixture(scope="module")
def apps(docs, tmp_path_factory) -> dict[str, Any]:
    """Each component's Faust app built from the settings its pod sees (data folder moved to a
    temporary one: nothing is written anyway; the web tokens from a temporary file standing in
    for the Secret the pods mount; the system's CAs for the brokers' CA the pods mount)."""
    built = {}
    for component in COMPONENTS:
        folder = tmp_path_factory.mktemp(component.subcommand)
        (folder / "tokens").write_text("t" * 64 + "\n")
        settings = component.settings(docs).with_overrides(data_dir=str(folder), kafka_ssl_cafile="",
                                                           web_tokens_file=str(folder / "tokens"))
        built[component.subcommand] = component.app(settings)
    return built


@pytest.fixture(scope="module")
def common(docs) -> Settings:
    """The settings of the shared ConfigMap: topics, partitions, replication, app id."""
    return Settings.from_env(named(docs, "ConfigMap", "callstt-common")["data"])


# --- the files ----------------------------------------------------------------------------------

def load_manifests_script():
    path = ROOT / "scripts" / "manifests"
    loader = importlib.machinery.SourceFileLoader("manifests", str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("manifests", loader))
    loader.exec_module(module)
    return module


def test_the_agents_deployments_are_what_their_registration_makes():
    """infra/k8s/agents.yaml and the agents' parts of the ServiceMonitors, the compose stack and
    the Prometheus jobs are written by scripts/manifests from streams/agents.py: a new or changed
    agent fails here until they are written again."""
    manifests = load_manifests_script()
    stale = [str(path.relative_to(ROOT)) for path in manifests.stale_files()]
    assert not stale, f"{stale} no longer match streams/agents.py: run `.venv/bin/python scripts/manifests`"
    generated = manifests.generated_files()
    assert {doc["metadata"]["name"] for doc in load_file(K8S / "agents.yaml") if doc["kind"] == "Deployment"} == \
        {component.name for component in COMPONENTS[1:]}
    compose = yaml.safe_load((ROOT / "infra" / "compose.yaml").read_text())
    jobs = yaml.safe_load((ROOT / "infra" / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    for agent in AGENT_BY_NAME.values():
        port = getattr(Settings(), agent.web_port)
        assert compose["services"][agent.name]["command"] == [agent.name]
        assert compose["services"][agent.name]["ports"] == [f"127.0.0.1:{port}:{port}"]
        assert {"job_name": f"callstt-{agent.name}", "metrics_path": "/metrics",
                "static_configs": [{"targets": [f"{agent.name}:{port}"]}]} in jobs
    # a hand edit inside a generated part is stale
    block = generated[manifests.COMPOSE]
    edited = manifests.splice((ROOT / "infra" / "compose.yaml").read_text(), block + "  extra: {}\n")
    assert edited != manifests.written(manifests.COMPOSE, block)


def kustomization_dirs() -> list[Path]:
    return sorted(path.parent for path in K8S.rglob("kustomization.yaml"))


@pytest.mark.parametrize("directory", kustomization_dirs(), ids=lambda path: str(path.relative_to(K8S)) if path != K8S else "base")
def test_each_kustomization_lists_exactly_the_yaml_files_beside_it(directory):
    listed = kustomization(directory).get("resources", [])
    present = {path.name for path in directory.glob("*.yaml") if path.name != "kustomization.yaml"}
    assert present and sorted(listed) == sorted(present)
    assert not list(directory.glob("*.yml")), "a .yml file kustomize would not be told about"


def test_every_document_parses_and_names_no_namespace():
    files = sorted(K8S.rglob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        for doc in load_file(path):
            if path.name == "kustomization.yaml":
                assert doc["kind"] in ("Kustomization", "Component")
                continue
            assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), path
            assert "namespace" not in doc["metadata"], f"{path}: the base is namespace-agnostic"
    assert {"StatefulSet", "Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "ScaledObject", "Kafka",
            "KafkaNodePool", "KafkaTopic"} <= {doc["kind"] for doc in build()}


# --- settings -----------------------------------------------------------------------------------

def test_every_env_name_is_a_setting_and_every_value_is_accepted(docs):
    known = setting_names()
    assert {"CALLSTT_KAFKA_BOOTSTRAP_SERVERS", "MODEL_SIZE", "OMP_NUM_THREADS"} <= known  # the derivation works
    for config_map in of_kind(docs, "ConfigMap"):
        unknown = set(config_map["data"]) - known
        assert not unknown, f"ConfigMap {config_map['metadata']['name']}: not settings: {sorted(unknown)}"
    for component in COMPONENTS:
        [container] = containers(named(docs, component.kind, component.name))
        env = container_env(docs, container)  # also: every ConfigMap it names exists
        assert not set(env) - known, f"{component.name}: not settings: {sorted(set(env) - known)}"
        settings = component.settings(docs)  # raises SettingsError for a value the code refuses
        assert settings.web_host == "0.0.0.0", "probes and Prometheus reach the pod's IP, not its loopback"
        assert settings.kafka_bootstrap_servers == named(docs, "ConfigMap", "callstt-common")["data"][
            "CALLSTT_KAFKA_BOOTSTRAP_SERVERS"]


def test_the_worker_runs_the_benchmarked_model_configuration(docs):
    settings = COMPONENTS[0].settings(docs)
    [container] = containers(named(docs, "StatefulSet", "callstt-worker"))
    bench = BENCHMARK.read_text()
    configuration = re.search(r"Settings: model (\S+) (\S+) on (\S+), (\d+) threads", bench)
    assert configuration, "docs/benchmark.md no longer states the benchmarked settings"
    model, compute_type, device, threads = configuration.groups()
    assert (settings.model, settings.compute_type, settings.device, settings.cpu_threads) == (
        model, compute_type, device, int(threads))
    assert cpu_cores(container["resources"]["requests"]["cpu"]) >= settings.cpu_threads


# --- processes, ports, probes -------------------------------------------------------------------

def cli_commands() -> set[str]:
    import typer.main

    from callstt.streams.cli import app

    return set(typer.main.get_command(app).commands)


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: c.subcommand)
def test_each_container_runs_its_callstt_subcommand(docs, component):
    commands = cli_commands()
    assert {"worker", "translator", "speaker", "topics"} <= commands
    [container] = containers(named(docs, component.kind, component.name))
    assert container["command"] == ["callstt"]
    assert container["args"][0] in commands and container["args"][0] == component.subcommand


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: c.subcommand)
def test_ports_and_probes_are_what_the_component_serves(docs, apps, component):
    settings = component.settings(docs)
    routes = set(apps[component.subcommand].web.views)
    assert {"/health", "/metrics"} <= routes
    workload = named(docs, component.kind, component.name)
    [container] = containers(workload)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    port = getattr(settings, component.port_setting)
    assert ports == {"http": port, "metrics": settings.metrics_port} and port == getattr(Settings(), component.port_setting)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        action = container[probe]["httpGet"]
        assert action["path"] == "/health" and action["path"] in routes
        assert ports.get(action["port"], action["port"]) == port, f"{probe} port"
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == settings.metrics_port  # Prometheus's only way in
    assert annotations["prometheus.io/path"] in routes
    [service] = [s for s in of_kind(docs, "Service") if selects(s["spec"]["selector"], workload)]
    assert {item["name"]: (item["port"], ports[item["targetPort"]]) for item in service["spec"]["ports"]} == \
        {"http": (port, port), "metrics": (settings.metrics_port, settings.metrics_port)}


def selects(selector: dict, workload: dict) -> bool:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def window(probe: dict) -> int:
    """Seconds of uninterrupted failure before the kubelet acts (Kubernetes' defaults: 10 s, 3)."""
    return probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)


def test_liveness_never_restarts_a_starting_or_overloaded_worker(docs):
    """/health is 503 while the models load and while no partition is assigned (a rebalance), and
    200 when the worker is only behind; the probes are set for that."""
    from callstt.streams.worker.web import WorkerStatus

    settings = COMPONENTS[0].settings(docs)
    status = WorkerStatus(settings)
    assert status.health()[0] == 503  # models loading: only the startup probe may see this
    status.models_ready.set()
    assert status.health()[0] == 503  # no partitions yet (or taken away by a rebalance)
    status.assigned_partitions = lambda: {0}
    status.lag_records = lambda: settings.overload_lag_records + 1
    code, body = status.health()
    assert (code, body["status"]) == (200, "overloaded")  # so liveness and readiness keep it

    [container] = containers(named(docs, "StatefulSet", "callstt-worker"))
    assert window(container["startupProbe"]) >= 300  # model load, changelog restore, group join
    # A rebalance waits up to the session timeout for a dead member, then reassigns.
    assert window(container["livenessProbe"]) >= 2 * settings.kafka_session_timeout_s
    assert window(container["readinessProbe"]) < window(container["livenessProbe"])
    for component in COMPONENTS[1:]:
        [container] = containers(named(docs, component.kind, component.name))
        assert "startupProbe" in container and window(container["livenessProbe"]) >= 60


# --- resources ----------------------------------------------------------------------------------

def cpu_cores(value: str | int) -> float:
    text = str(value)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def mebibytes(value: str) -> float:
    units = {"Mi": 1, "Gi": 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    for unit, factor in units.items():
        if value.endswith(unit):
            return float(value[: -len(unit)]) * factor
    return float(value) / 2**20


def bench_rss_mb() -> dict[str, float]:
    """Peak RSS (MB) of each component as docs/benchmark.md reports it: the worker's in the bench
    table, each agent's as "<name> peak RSS <MB> MB" (or a range, "<low>-<high> MB": the high)."""
    text = BENCHMARK.read_text()
    worker = re.search(r"worker RSS idle / peak \(VmHWM\) \| [\d.]+ MB / ([\d.]+) MB", text)
    assert worker, "docs/benchmark.md no longer reports the worker's RSS figures the manifests cite"
    peaks = {"worker": float(worker[1])}
    for name in AGENT_BY_NAME:
        found = re.search(rf"\b{name} peak RSS\s+(?:[\d.]+-)?([\d.]+) MB", text, re.IGNORECASE)
        if found:
            peaks[name] = float(found[1])
    return peaks


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: c.subcommand)
def test_memory_covers_the_benchmarked_peak(docs, component):
    peaks = bench_rss_mb()
    assert component.subcommand in peaks, f"docs/benchmark.md reports no peak RSS for {component.subcommand}"
    peak_mib = peaks[component.subcommand] * 1e6 / 2**20

    [container] = containers(named(docs, component.kind, component.name))
    resources = container["resources"]
    assert mebibytes(resources["requests"]["memory"]) >= peak_mib
    assert mebibytes(resources["limits"]["memory"]) >= 1.5 * peak_mib
    assert cpu_cores(resources["requests"]["cpu"]) > 0


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: c.subcommand)
def test_the_pages_with_call_content_need_the_token_of_the_mounted_secret(docs, component):
    """Bound beyond loopback, each component's pages need a token (streams/web_auth.py): its
    tokens file is the key "tokens" of the Secret callstt-web-tokens, mounted read-only where
    CALLSTT_WEB_TOKENS_FILE points; never open by a setting (CALLSTT_WEB_INSECURE) or Faust's
    debug pages."""
    settings = component.settings(docs)
    assert settings.web_host == "0.0.0.0" and not settings.web_insecure and not settings.web_debug_pages
    workload = named(docs, component.kind, component.name)
    [container] = containers(workload)
    volumes = {volume["name"]: volume for volume in workload["spec"]["template"]["spec"]["volumes"]}
    tokens = Path(settings.web_tokens_file)
    [mount] = [mount for mount in container["volumeMounts"] if mount["mountPath"] == str(tokens.parent)]
    assert mount.get("readOnly") is True
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "callstt-web-tokens" and tokens.name == "tokens" and "items" not in secret


# --- the worker's state, shutdown and disruptions ------------------------------------------------

def test_the_worker_keeps_its_state_on_its_own_volume_and_stops_cleanly(docs):
    settings = COMPONENTS[0].settings(docs)
    worker = named(docs, "StatefulSet", "callstt-worker")
    [container] = containers(worker)
    [claim] = worker["spec"]["volumeClaimTemplates"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == settings.data_dir
    service = named(docs, "Service", worker["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None" and selects(service["spec"]["selector"], worker)
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60
    [budget] = [b for b in of_kind(docs, "PodDisruptionBudget") if selects(b["spec"]["selector"]["matchLabels"], worker)]
    assert budget["spec"]["maxUnavailable"] == 1


def test_the_gateway_serves_its_port_behind_the_token_and_logs_in_as_its_role(docs, common):
    """infra/k8s/gateway.yaml: `callstt gateway` on the port the settings give it, probed on its
    /health, its pages behind the mounted tokens, its own Kafka user, clients through the
    ingress and Prometheus on the metrics port only, memory over its benchmarked peak, and always
    a second pod to reconnect to."""
    from callstt.streams.gateway.server import Gateway
    from callstt.streams.web_auth import WebAccess

    workload = named(docs, "Deployment", "callstt-gateway")
    [container] = containers(workload)
    env = container_env(docs, container)
    assert set(env) <= setting_names()
    settings = Settings.from_env(env)
    assert (container["command"], container["args"]) == (["callstt"], ["gateway"]) and "gateway" in cli_commands()
    assert settings.gateway_host == "0.0.0.0" and not settings.web_insecure and settings.web_tokens_file
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": Settings().gateway_port, "metrics": settings.metrics_port}
    routes = {resource.canonical for resource in Gateway(settings, WebAccess(("t" * 32,), "test")).web_app()
              .router.resources()}
    assert {"/v1/listen", "/listen", "/health", "/metrics"} <= routes
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    tokens = Path(settings.web_tokens_file)
    [mount] = [mount for mount in container["volumeMounts"] if mount["mountPath"] == str(tokens.parent)]
    volumes = {volume["name"]: volume for volume in workload["spec"]["template"]["spec"]["volumes"]}
    assert mount.get("readOnly") is True and volumes[mount["name"]]["secret"]["secretName"] == "callstt-web-tokens"
    assert env["CALLSTT_KAFKA_SASL_USERNAME"] == "callstt-gateway"
    assert env["CALLSTT_KAFKA_SASL_PASSWORD"] == "callstt-gateway/password"
    assert ingress_peers(docs, workload) == {settings.metrics_port: ["monitoring"],
                                             Settings().gateway_port: ["ingress-nginx"]}
    peak = re.search(r"Gateway peak RSS ([\d.]+) MB", BENCHMARK.read_text())
    assert peak, "docs/benchmark.md reports no peak RSS for the gateway"
    assert mebibytes(container["resources"]["requests"]["memory"]) >= float(peak[1]) * 1e6 / 2**20
    [budget] = [b for b in of_kind(docs, "PodDisruptionBudget") if selects(b["spec"]["selector"]["matchLabels"], workload)]
    assert workload["spec"]["replicas"] >= 2 and budget["spec"]["minAvailable"] >= 1
    assert workload["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


# --- Strimzi --------------------------------------------------------------------------------------

def test_the_kafka_cluster_has_rf_3_and_min_isr_2_and_is_the_one_the_pods_use(docs, common):
    [kafka] = of_kind(docs, "Kafka")
    name, config = kafka["metadata"]["name"], kafka["spec"]["kafka"]["config"]
    assert (config["default.replication.factor"], config["min.insync.replicas"],
            config["offsets.topic.replication.factor"]) == (3, 2, 3)
    pools = [pool for pool in of_kind(docs, "KafkaNodePool") if pool["metadata"]["labels"]["strimzi.io/cluster"] == name]
    assert sum(pool["spec"]["replicas"] for pool in pools if "broker" in pool["spec"]["roles"]) >= 3
    assert sum(pool["spec"]["replicas"] for pool in pools if "controller" in pool["spec"]["roles"]) in (3, 5)
    assert "topicOperator" in kafka["spec"]["entityOperator"]
    [listener] = kafka["spec"]["kafka"]["listeners"]  # the only way in: TLS and SCRAM, ACLs on
    assert common.kafka_bootstrap_servers == f"{name}-kafka-bootstrap:{listener['port']}"
    assert listener["tls"] and listener["authentication"]["type"] == "scram-sha-512"
    assert (common.kafka_security_protocol, common.kafka_sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    assert "userOperator" in kafka["spec"]["entityOperator"]
    for topic in of_kind(docs, "KafkaTopic"):
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == name


def kafka_topics(docs: list[dict]) -> dict[str, dict]:
    return {topic["spec"].get("topicName", topic["metadata"]["name"]): topic["spec"] for topic in of_kind(docs, "KafkaTopic")}


def test_the_kafka_topics_are_what_callstt_topics_create_makes(docs, common):
    from callstt.streams.client.topics import control_topic, project_topics

    expected = project_topics(common)
    assert control_topic(common) in {spec.name for spec in expected}
    assert common.topic_replication == 3
    topics = kafka_topics(docs)
    for spec in expected:
        assert spec.name in topics, f"no KafkaTopic for {spec.name}"
        declared = topics[spec.name]
        assert (declared["partitions"], declared["replicas"]) == (spec.partitions, spec.replication), spec.name
        assert {key: str(value) for key, value in declared.get("config", {}).items()} == spec.config, spec.name


def test_the_changelog_topics_are_the_tables_changelogs(docs, apps, common):
    """Every table of every component has its changelog declared: compacted, with the table's
    partitions and RF; exactly as every component creates them at start (streams/client/topics.py
    changelog_topics, through streams/lifecycle.py prepare_app_topics)."""
    from callstt.streams.client.topics import changelog_topics, project_topics

    made_at_start = {spec.name: spec for app in apps.values() for spec in changelog_topics(common, app.tables.values())}

    topics = kafka_topics(docs)
    changelogs = set()
    for app in apps.values():
        for table in app.tables.values():
            name = table.changelog_topic_name
            changelogs.add(name)
            assert name in topics, f"no KafkaTopic for {name}"
            declared = topics[name]
            assert declared["partitions"] == (table.partitions or common.topic_partitions)
            assert declared["replicas"] == common.topic_replication
            assert declared["config"]["cleanup.policy"] == "compact"
            assert {k: str(v) for k, v in declared["config"].items()} == made_at_start[name].config
            assert (declared["partitions"], declared["replicas"]) == (made_at_start[name].partitions,
                                                                      made_at_start[name].replication)
    assert len(changelogs) == 1 + len(AGENT_BY_NAME) and set(made_at_start) == changelogs
    assert set(topics) == changelogs | {spec.name for spec in project_topics(common)}, "a topic no code uses"


def test_the_partition_count_is_written_in_one_place(docs, common):
    """config.yaml's CALLSTT_TOPIC_PARTITIONS: the raw files hold placeholders (0, which Strimzi
    and KEDA refuse) that the build replaces, so there is no second copy to forget."""
    raw = {path.name: load_file(path) for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml"}
    for name, file_docs in raw.items():
        for doc in file_docs:
            if doc["kind"] == "KafkaTopic" and doc["spec"]["topicName"] != common.dead_letter_topic:
                assert doc["spec"]["partitions"] == 0, f"{name}: {doc['metadata']['name']}"
            if doc["kind"] == "ScaledObject":
                assert doc["spec"]["maxReplicaCount"] == 0, f"{name}: {doc['metadata']['name']}"
    built = kafka_topics(docs)
    assert {spec["partitions"] for name, spec in built.items() if name != common.dead_letter_topic} == \
        {common.topic_partitions}
    assert {so["spec"]["maxReplicaCount"] for so in of_kind(docs, "ScaledObject")} == {common.topic_partitions}


# --- who may read a call: Kafka users and network policies ----------------------------------------

def test_each_kafka_user_has_exactly_its_roles_acls_and_each_component_logs_in_as_its_role(docs, common):
    """kafka-users.yaml is the role table of streams/client/acls.py (`callstt acls --format
    strimzi`) for the deployment's settings; each pod and its KEDA scaler log in as its role."""
    [kafka] = of_kind(docs, "Kafka")
    users = {user["metadata"]["name"]: user for user in of_kind(docs, "KafkaUser")}
    assert users == {f"callstt-{role}": strimzi_kafka_user(f"callstt-{role}", kafka["metadata"]["name"], role,
                                                          grants(common, role)) for role in ROLES}
    for component in COMPONENTS:
        role = component.subcommand
        [container] = containers(named(docs, component.kind, component.name))
        env = container_env(docs, container)
        assert env["CALLSTT_KAFKA_SASL_USERNAME"] == f"callstt-{role}"
        assert env["CALLSTT_KAFKA_SASL_PASSWORD"] == f"callstt-{role}/password"  # the user operator's Secret
        [trigger] = [so["spec"]["triggers"][0] for so in of_kind(docs, "ScaledObject")
                     if so["spec"]["scaleTargetRef"]["name"] == component.name]
        auth = named(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]
        assert auth["env"] == [{"parameter": "username", "name": "CALLSTT_KAFKA_SASL_USERNAME",
                                "containerName": container["name"]}]
        assert {(ref["parameter"], ref["name"], ref["key"]) for ref in auth["secretTargetRef"]} == \
            {("password", f"callstt-{role}", "password"), ("ca", f"{kafka['metadata']['name']}-cluster-ca-cert", "ca.crt")}
        assert (trigger["metadata"]["sasl"], trigger["metadata"]["tls"]) == ("scram_sha512", "enable")


def ingress_peers(docs: list[dict], workload: dict) -> dict[int, list[str]]:
    """Port -> the namespaces the network policies let in to the workload's pods."""
    admitted: dict[int, list[str]] = {}
    for policy in of_kind(docs, "NetworkPolicy"):
        if selects(policy["spec"]["podSelector"]["matchLabels"], workload):
            for rule in policy["spec"].get("ingress", []):
                for port in rule["ports"]:
                    admitted.setdefault(port["port"], []).extend(
                        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in rule["from"])
    return admitted


def test_network_policies_let_prometheus_reach_metrics_only_and_the_components_reach_only_kafka(docs, common):
    [deny] = [p for p in of_kind(docs, "NetworkPolicy") if not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    [kafka] = of_kind(docs, "Kafka")
    [listener] = kafka["spec"]["kafka"]["listeners"]
    for component in COMPONENTS:
        workload = named(docs, component.kind, component.name)
        assert selects(deny["spec"]["podSelector"]["matchLabels"], workload)  # nothing unless allowed
        web_port = getattr(component.settings(docs), component.port_setting)
        expected = {common.metrics_port: ["monitoring"]}
        if component.subcommand == "worker":  # the only web port with call content: token, through the ingress
            expected[web_port] = ["ingress-nginx"]
        assert ingress_peers(docs, workload) == expected, component.name
        egress = [rule for p in of_kind(docs, "NetworkPolicy") if selects(p["spec"]["podSelector"]["matchLabels"], workload)
                  for rule in p["spec"].get("egress", [])]
        assert {(port["port"], port["protocol"]) for rule in egress for port in rule["ports"]} == \
            {(listener["port"], "TCP"), (53, "UDP"), (53, "TCP")}
        [to_kafka] = [rule for rule in egress if rule["ports"][0]["port"] == listener["port"]]
        assert to_kafka["to"] == [{"podSelector": {"matchLabels": {"strimzi.io/cluster": kafka["metadata"]["name"],
                                                                   "strimzi.io/kind": "Kafka"}}}]
    # the brokers' side: Strimzi admits only callstt's pods and KEDA to the listener
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "callstt"}}} in listener["networkPolicyPeers"]


# --- KEDA ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: c.subcommand)
def test_keda_scales_each_consumer_group_on_its_input_topic_up_to_its_partitions(docs, apps, component):
    settings = component.settings(docs)
    workload = named(docs, component.kind, component.name)
    [scaled] = [so for so in of_kind(docs, "ScaledObject")
                if (so["spec"]["scaleTargetRef"]["kind"], so["spec"]["scaleTargetRef"]["name"]) ==
                (component.kind, component.name)]
    assert scaled["spec"]["scaleTargetRef"]["apiVersion"] == workload["apiVersion"]
    assert "replicas" not in workload["spec"], "kubectl apply would reset KEDA's replica count"
    [trigger] = scaled["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    # the consumer group the component really joins: the Faust app id
    assert meta["consumerGroup"] == apps[component.subcommand].conf.id
    agent = AGENT_BY_NAME.get(component.subcommand)
    assert meta["consumerGroup"] == (agent.app_id(settings) if agent else settings.app_id)
    topic = component.input_topic(settings)
    assert meta["topic"] == topic
    assert meta["allowIdleConsumers"] == "false" and int(meta["lagThreshold"]) > 0
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    assert scaled["spec"]["maxReplicaCount"] <= kafka_topics(docs)[topic]["partitions"]
    # KEDA's scalers run in KEDA's namespace: the bootstrap Service's name must be qualified.
    [kafka] = of_kind(docs, "Kafka")
    host, port = meta["bootstrapServers"].rsplit(":", 1)
    service, _namespace, svc = host.split(".")
    assert (service, svc) == (f"{kafka['metadata']['name']}-kafka-bootstrap", "svc")
    assert settings.kafka_bootstrap_servers.endswith(f":{port}")
    if component.subcommand == "worker":
        assert int(meta["lagThreshold"]) == settings.overload_lag_records


# --- Prometheus Operator ------------------------------------------------------------------------

def test_the_service_monitors_scrape_each_components_metrics(docs, apps):
    monitors = load_file(K8S / "components" / "servicemonitors" / "servicemonitors.yaml")
    assert len(monitors) == len(COMPONENTS)
    for component in COMPONENTS:
        workload = named(docs, component.kind, component.name)
        [service] = [s for s in of_kind(docs, "Service") if selects(s["spec"]["selector"], workload)]
        [monitor] = [m for m in monitors if m["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()]
        [endpoint] = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
        assert endpoint["path"] in apps[component.subcommand].web.views


def test_the_prometheus_rule_is_the_alert_rules_file_and_names_the_workers_job(docs):
    """The operator's copy of infra/prometheus/alerts.yml (checked by promtool) is the same rules;
    the job they name is the one the worker's ServiceMonitor gives its series (the Service's name)."""
    [rule] = load_file(K8S / "components" / "servicemonitors" / "prometheusrule.yaml")
    alerts = yaml.safe_load((ROOT / "infra" / "prometheus" / "alerts.yml").read_text())
    assert rule["kind"] == "PrometheusRule" and rule["spec"]["groups"] == alerts["groups"]
    monitors = load_file(K8S / "components" / "servicemonitors" / "servicemonitors.yaml")
    [monitor] = [m for m in monitors if m["metadata"]["name"] == "callstt-worker"]
    assert "jobLabel" not in monitor["spec"]  # so job = the Service's name
    [service] = [s for s in of_kind(docs, "Service")
                 if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    jobs = {job for group in alerts["groups"] for r in group["rules"] for job in re.findall(r'job="([^"]+)"', r["expr"])}
    assert jobs == {service["metadata"]["name"]}


# --- against kustomize itself ---------------------------------------------------------------------

def by_identity(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


def test_kubectl_kustomize_builds_the_same_and_an_overlay_moves_keda_to_its_namespace(tmp_path):
    assert shutil.which("kubectl"), "kubectl (with its built-in kustomize) is needed to build infra/k8s"
    built = list(yaml.safe_load_all(subprocess.run(["kubectl", "kustomize", str(K8S)], check=True, capture_output=True,
                                                   text=True, timeout=60).stdout))
    assert by_identity(built) == by_identity(build())

    # The overlay kustomization.yaml's comment shows, for another namespace.
    base = os.path.relpath(K8S, tmp_path)  # kustomize takes no absolute paths
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "namespace": "calls-prod", "resources": [base], "components": [f"{base}/components/servicemonitors"],
        "replacements": [{"source": {"kind": "ConfigMap", "name": "callstt-common", "fieldPath": "metadata.namespace"},
                          "targets": [{"select": {"kind": "ScaledObject"},
                                       "fieldPaths": ["spec.triggers.0.metadata.bootstrapServers"],
                                       "options": {"delimiter": ".", "index": 1}}]}]}))
    overlay = list(yaml.safe_load_all(subprocess.run(["kubectl", "kustomize", str(tmp_path)], check=True,
                                                     capture_output=True, text=True, timeout=60).stdout))
    assert {doc["metadata"].get("namespace") for doc in overlay} == {"calls-prod"}
    assert len(of_kind(overlay, "ServiceMonitor")) == len(COMPONENTS) and len(of_kind(overlay, "PrometheusRule")) == 1
    for scaled in of_kind(overlay, "ScaledObject"):
        assert scaled["spec"]["triggers"][0]["metadata"]["bootstrapServers"] == \
            "callstt-kafka-bootstrap.calls-prod.svc:9093"
