#!/usr/bin/env python3
"""Validate rendered manifests (`kubectl kustomize OVERLAY | check_manifests.py NAME`).

1. Schema: every built-in kind against the Kubernetes JSON schemas shipped in the PyPI package
   kubernetes-validate (strict: unknown fields fail). Custom resources (Prometheus operator,
   KEDA, Strimzi) have no schema there: they are skipped BY NAME and listed; any other kind
   without a schema fails, so a typo in a kind or apiVersion cannot slip through.
2. This project's own rules, which schemas cannot express:
   - the worker pod is non-root, read-only root fs, no privilege escalation, ALL capabilities
     dropped, seccomp RuntimeDefault, has startup/liveness/readiness probes, requests and limits;
   - terminationGracePeriodSeconds exceeds NOTIFIER_SHUTDOWN_GRACE_S by at least 10 s;
   - KEDA's maxReplicaCount (and the Deployment's replicas) never exceed the input topic's
     partitions, when the KafkaTopic is in the same output;
   - the KafkaUser's ACLs are exactly: Read+Describe on the input topic, Read on the group,
     Write+Describe on the results, DLQ and collector-task topics, named as the settings
     name them;
   - the PodMonitor and PodDisruptionBudget select the worker pods; the image has a tag;
   - operator values: no REPLACE_ME placeholder is left anywhere (operator-values.env says what
     to supply); brand and customer-service number are set and not the samples; a Twilio route
     has its sender and credentials;
   - migrations: an initContainer of the same image runs `db upgrade`;
   - webhooks: their own port (NOTIFIER_RECEIPTS_HTTP_PORT, not NOTIFIER_HTTP_PORT), the only
     port any Service or Ingress reaches, under /receipts/ only, on the host of
     NOTIFIER_RECEIPTS_PUBLIC_URL, and admitted by the NetworkPolicy.
Usage: kubectl kustomize OVERLAY | check_manifests.py NAME [--allow-placeholders]
(--allow-placeholders reports placeholders as notes: for the overlays as shipped, in CI.)
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import yaml

K8S_VERSION = "1.32.0"
# Kinds of operators this project deploys with; no schema ships for them in kubernetes-validate.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"),
    ("kafka.strimzi.io/v1beta2", "KafkaUser"),
}
GRACE_MARGIN_S = 10
PLACEHOLDER = "REPLACE_ME"
# The Settings defaults of brand and customer service: samples no borrower may see.
SAMPLE_VALUES = {"NOTIFIER_BRAND_NAME": "JieBei", "NOTIFIER_CUSTOMER_SERVICE": "95188"}
WEBHOOK_PATH = "/receipts/"

Doc = dict[str, Any]


class Findings:
    def __init__(self, overlay: str) -> None:
        self.overlay = overlay
        self.errors: list[str] = []
        self.notes: list[str] = []

    def error(self, msg: str) -> None:
        self.errors.append(msg)

    def note(self, msg: str) -> None:
        self.notes.append(msg)

    def check(self, ok: bool, msg: str) -> None:
        if not ok:
            self.error(msg)


def _name(doc: Doc) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def _of_kind(docs: list[Doc], kind: str) -> Iterator[Doc]:
    return (d for d in docs if d.get("kind") == kind)


def validate_schemas(docs: list[Doc], f: Findings) -> None:
    skipped = []
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in CRD_KINDS:
            skipped.append(_name(doc))
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            f.error(f"{_name(doc)}: schema: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            f.error(f"{_name(doc)}: no schema for {key[0]} {key[1]} and not a known CRD kind")
    if skipped:
        f.note("CRDs not schema-validated (no schema shipped): " + ", ".join(sorted(skipped)))


def _settings(docs: list[Doc]) -> dict[str, str]:
    for cm in _of_kind(docs, "ConfigMap"):
        if cm["metadata"]["name"].startswith("overdue-notifier-env"):
            return dict(cm.get("data", {}))
    return {}


def check_workload(docs: list[Doc], f: Findings) -> Doc | None:
    deployments = [d for d in _of_kind(docs, "Deployment")]
    if len(deployments) != 1:
        f.error(f"expected one Deployment, found {len(deployments)}")
        return None
    dep = deployments[0]
    pod = dep["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    f.check(psc.get("runAsNonRoot") is True, "pod: runAsNonRoot must be true")
    f.check(
        psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
        "pod: seccompProfile must be RuntimeDefault",
    )
    for c in pod["containers"]:
        where = f"container {c['name']}"
        sc = c.get("securityContext", {})
        f.check(sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem")
        f.check(sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation")
        f.check("ALL" in sc.get("capabilities", {}).get("drop", []), f"{where}: drop ALL")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            f.check(probe in c, f"{where}: {probe} missing")
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            for what in ("cpu", "memory"):
                f.check(what in res.get(part, {}), f"{where}: resources.{part}.{what} missing")
        image = c.get("image", "")
        tag = image.rsplit("/", 1)[-1]
        f.check(
            ("@sha256:" in image or ":" in tag) and not tag.endswith(":latest"),
            f"{where}: image {image!r} needs a tag (not latest) or a digest",
        )
    grace = pod.get("terminationGracePeriodSeconds", 30)
    shutdown = float(_settings(docs).get("NOTIFIER_SHUTDOWN_GRACE_S", "20"))
    f.check(
        grace >= shutdown + GRACE_MARGIN_S,
        f"terminationGracePeriodSeconds {grace} must be >= NOTIFIER_SHUTDOWN_GRACE_S "
        f"{shutdown:g} + {GRACE_MARGIN_S}",
    )
    labels = dep["spec"]["template"]["metadata"].get("labels", {})
    for kind in ("PodMonitor", "PodDisruptionBudget"):
        objs = list(_of_kind(docs, kind))
        f.check(bool(objs), f"{kind} missing")
        for obj in objs:
            wanted = obj["spec"]["selector"].get("matchLabels", {})
            f.check(
                bool(wanted) and all(labels.get(k) == v for k, v in wanted.items()),
                f"{_name(obj)} selector {wanted} does not select the worker pods",
            )
    f.check(any(_of_kind(docs, "PrometheusRule")), "PrometheusRule missing")
    f.check(any(_of_kind(docs, "NetworkPolicy")), "NetworkPolicy missing")
    return dep


def _topics(docs: list[Doc]) -> dict[str, Doc]:
    return {
        t["spec"].get("topicName", t["metadata"]["name"]): t for t in _of_kind(docs, "KafkaTopic")
    }


def check_scaling(docs: list[Doc], dep: Doc | None, f: Findings) -> None:
    settings = _settings(docs)
    input_topic = settings.get("NOTIFIER_INPUT_TOPIC", "loan.overdue.v1")
    topics = _topics(docs)
    partitions = topics[input_topic]["spec"]["partitions"] if input_topic in topics else None
    if partitions is None:
        f.note(f"no KafkaTopic {input_topic} in this output: replica/partition check skipped")
        return
    if dep is not None:
        replicas = dep["spec"].get("replicas", 1)
        f.check(
            replicas <= partitions,
            f"Deployment replicas {replicas} > {partitions} partitions of {input_topic}",
        )
    for so in _of_kind(docs, "ScaledObject"):
        most = so["spec"].get("maxReplicaCount", 100)
        f.check(
            most <= partitions,
            f"{_name(so)}: maxReplicaCount {most} > {partitions} partitions of {input_topic}",
        )
        for trig in so["spec"].get("triggers", []):
            meta = trig.get("metadata", {})
            if trig.get("type") == "kafka":
                f.check(meta.get("topic") == input_topic, f"{_name(so)}: trigger topic")
                f.check(
                    meta.get("consumerGroup")
                    == settings.get("NOTIFIER_KAFKA_GROUP_ID", "overdue-notifier"),
                    f"{_name(so)}: trigger consumerGroup differs from NOTIFIER_KAFKA_GROUP_ID",
                )
                f.check(meta.get("allowIdleConsumers") != "true", f"{_name(so)}: idle consumers")


def check_acls(docs: list[Doc], f: Findings) -> None:
    s = _settings(docs)
    inp = s.get("NOTIFIER_INPUT_TOPIC", "loan.overdue.v1")
    expected = {
        ("topic", inp, "Describe"),
        ("topic", inp, "Read"),
        ("group", s.get("NOTIFIER_KAFKA_GROUP_ID", "overdue-notifier"), "Read"),
        ("topic", s.get("NOTIFIER_RESULTS_TOPIC", "notification.delivery.v1"), "Describe"),
        ("topic", s.get("NOTIFIER_RESULTS_TOPIC", "notification.delivery.v1"), "Write"),
        ("topic", s.get("NOTIFIER_DLQ_TOPIC", "loan.overdue.v1.dlq"), "Describe"),
        ("topic", s.get("NOTIFIER_DLQ_TOPIC", "loan.overdue.v1.dlq"), "Write"),
        ("topic", s.get("NOTIFIER_TASKS_TOPIC", "collections.tasks.v1"), "Describe"),
        ("topic", s.get("NOTIFIER_TASKS_TOPIC", "collections.tasks.v1"), "Write"),
    }
    for user in _of_kind(docs, "KafkaUser"):
        got: set[tuple[str, str, str]] = set()
        for acl in user["spec"].get("authorization", {}).get("acls", []):
            res = acl["resource"]
            if (
                res.get("patternType", "literal") != "literal"
                or acl.get("type", "allow") != "allow"
            ):
                f.error(f"{_name(user)}: only literal allow rules are expected: {res}")
            ops = acl.get("operations") or [acl.get("operation")]
            got.update((res["type"], res.get("name", ""), op) for op in ops)
        extra, missing = got - expected, expected - got
        f.check(not extra, f"{_name(user)}: ACLs beyond what the service needs: {sorted(extra)}")
        f.check(not missing, f"{_name(user)}: ACLs missing: {sorted(missing)}")


def _walk(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def check_operator_values(docs: list[Doc], f: Findings, *, allow_placeholders: bool) -> None:
    left = [
        f"{_name(doc)}{path}"
        for doc in docs
        for path, value in _walk(doc, "")
        if PLACEHOLDER in value
    ]
    if left:
        msg = f"operator value not supplied ({PLACEHOLDER} left, see operator-values.env): "
        (f.note if allow_placeholders else f.error)(msg + ", ".join(left))
    settings = _settings(docs)
    for key, sample in SAMPLE_VALUES.items():
        value = settings.get(key)
        f.check(value is not None, f"{key} must be set by the operator (the default is a sample)")
        f.check(value != sample, f"{key} is the sample value {sample!r}")
    sms = [p.strip() for p in settings.get("NOTIFIER_SMS_PROVIDER", "").split(",")]
    routes = settings.get("NOTIFIER_SMS_ROUTES", "")
    if "twilio" in sms or "twilio" in routes:
        f.check(bool(settings.get("NOTIFIER_TWILIO_FROM")), "twilio: NOTIFIER_TWILIO_FROM unset")
        env = {
            e["name"]
            for d in _of_kind(docs, "Deployment")
            for c in d["spec"]["template"]["spec"]["containers"]
            for e in c.get("env", [])
        }
        for var in ("NOTIFIER_TWILIO_ACCOUNT_SID", "NOTIFIER_TWILIO_AUTH_TOKEN"):
            f.check(var in env or var in settings, f"twilio: {var} not provided")
    voice = [p.strip() for p in settings.get("NOTIFIER_VOICE_PROVIDER", "console").split(",")]
    # Calls through the console are printed, never placed: a deployment must name a provider.
    f.check(voice != ["console"], "NOTIFIER_VOICE_PROVIDER is console: calls would not be placed")
    if "twilio_voice" in voice:
        f.check(
            bool(settings.get("NOTIFIER_TWILIO_VOICE_FROM")),
            "twilio_voice: NOTIFIER_TWILIO_VOICE_FROM unset",
        )


def check_migrations(dep: Doc | None, f: Findings) -> None:
    if dep is None:
        return
    pod = dep["spec"]["template"]["spec"]
    image = pod["containers"][0].get("image")
    runs = [
        c
        for c in pod.get("initContainers", [])
        if [*c.get("command", []), *c.get("args", [])][-2:] == ["db", "upgrade"]
    ]
    f.check(bool(runs), "no initContainer runs `db upgrade` (run refuses an unmigrated ledger)")
    for c in runs:
        f.check(c.get("image") == image, f"initContainer {c['name']}: image differs from the app")
        sc = c.get("securityContext", {})
        f.check(sc.get("readOnlyRootFilesystem") is True, f"{c['name']}: readOnlyRootFilesystem")
        f.check(sc.get("allowPrivilegeEscalation") is False, f"{c['name']}: privilege escalation")
        f.check("limits" in c.get("resources", {}), f"initContainer {c['name']}: no limits")


def _port_numbers(container: Doc) -> dict[str, int]:
    return {p["name"]: int(p["containerPort"]) for p in container.get("ports", []) if "name" in p}


def check_webhooks(docs: list[Doc], dep: Doc | None, f: Findings) -> None:
    if dep is None:
        return
    settings = _settings(docs)
    ops_port = int(settings.get("NOTIFIER_HTTP_PORT", "8080"))
    hook_port = int(settings.get("NOTIFIER_RECEIPTS_HTTP_PORT", "0"))
    f.check(hook_port != 0, "NOTIFIER_RECEIPTS_HTTP_PORT unset: no receipt or STOP reply arrives")
    f.check(hook_port != ops_port, "the webhook port must differ from NOTIFIER_HTTP_PORT")
    ports = _port_numbers(dep["spec"]["template"]["spec"]["containers"][0])
    f.check(ports.get("http") == ops_port, f"container port http != NOTIFIER_HTTP_PORT {ops_port}")
    f.check(
        ports.get("webhooks") == hook_port,
        f"container port webhooks != NOTIFIER_RECEIPTS_HTTP_PORT {hook_port}",
    )
    hook_services: dict[str, set[str]] = {}
    for svc in _of_kind(docs, "Service"):
        for p in svc["spec"].get("ports", []):
            target = p.get("targetPort", p.get("port"))
            f.check(
                target in ("webhooks", hook_port),
                f"{_name(svc)}: port {p.get('name')} reaches {target!r}, not the webhook port "
                "(/metrics and the probes must stay cluster-internal)",
            )
            hook_services.setdefault(svc["metadata"]["name"], set()).update(
                {str(p.get("name")), str(p.get("port"))}
            )
    ingresses = list(_of_kind(docs, "Ingress"))
    f.check(bool(ingresses), "no Ingress: providers cannot reach the webhooks")
    public = settings.get("NOTIFIER_RECEIPTS_PUBLIC_URL", "")
    public_host = public.split("/")[2] if public.count("/") >= 2 else ""
    f.check(public.startswith("https://"), "NOTIFIER_RECEIPTS_PUBLIC_URL must be https://HOST")
    for ing in ingresses:
        for rule in ing["spec"].get("rules", []):
            f.check(
                rule.get("host") == public_host,
                f"{_name(ing)}: host {rule.get('host')!r} is not the host of "
                f"NOTIFIER_RECEIPTS_PUBLIC_URL {public_host!r} (Twilio signs that URL)",
            )
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                port = backend["port"].get("name", str(backend["port"].get("number")))
                f.check(
                    path.get("path", "/").startswith(WEBHOOK_PATH),
                    f"{_name(ing)}: path {path.get('path')!r} outside {WEBHOOK_PATH}",
                )
                f.check(
                    port in hook_services.get(backend["name"], set()),
                    f"{_name(ing)}: backend {backend['name']}:{port} is not a webhook Service port",
                )
    admitted = {
        str(p.get("port"))
        for np in _of_kind(docs, "NetworkPolicy")
        for rule in np["spec"].get("ingress", [])
        for p in rule.get("ports", [])
    }
    f.check(
        bool(admitted & {"webhooks", str(hook_port)}),
        "NetworkPolicy admits no ingress to the webhook port",
    )


def main(argv: list[str]) -> int:
    args = [a for a in argv[1:] if not a.startswith("--")]
    overlay = args[0] if args else "stdin"
    allow_placeholders = "--allow-placeholders" in argv
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    f = Findings(overlay)
    validate_schemas(docs, f)
    dep = check_workload(docs, f)
    check_scaling(docs, dep, f)
    check_acls(docs, f)
    check_operator_values(docs, f, allow_placeholders=allow_placeholders)
    check_migrations(dep, f)
    check_webhooks(docs, dep, f)
    for note in f.notes:
        print(f"  {overlay}: note: {note}")
    for err in f.errors:
        print(f"  {overlay}: ERROR: {err}")
    print(f"  {overlay}: {len(docs)} objects, {len(f.errors)} errors")
    return 1 if f.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
