"""Checks deploy/kubernetes/podmonitor.yaml against the manifests, without a cluster (the PodMonitor is the Prometheus
Operator's resource, which kubernetes-validate does not know): each PodMonitor scrapes a port that a coordinator's
container names, and that container serves it with `--prometheus`. Exits 1 naming the first problem.
Usage: check_podmonitor.py PODMONITOR.yaml MANIFEST.yaml..."""
import sys

import yaml


def containers(document):
    """Every container of a manifest's pod templates (a Job's, or each PyTorchJob replica's)."""
    spec = document.get("spec", {})
    templates = [spec.get("template", {})] + [r.get("template", {}) for r in spec.get("pytorchReplicaSpecs", {}).values()]
    return [c for t in templates for c in t.get("spec", {}).get("containers", [])]


def main():
    monitors = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
    served = {}  # port name -> the --prometheus addresses of containers naming it
    for path in sys.argv[2:]:
        for document in yaml.safe_load_all(open(path)):
            for container in containers(document or {}):
                args = container.get("args", [])
                address = args[args.index("--prometheus") + 1] if "--prometheus" in args else None
                for port in container.get("ports", []):
                    if address and address.endswith(f":{port['containerPort']}"):
                        served.setdefault(port["name"], []).append(address)
    problems = []
    for monitor in monitors:
        name = monitor.get("metadata", {}).get("name")
        if (monitor.get("apiVersion"), monitor.get("kind")) != ("monitoring.coreos.com/v1", "PodMonitor"):
            problems.append(f"{name}: not a monitoring.coreos.com/v1 PodMonitor")
        if not monitor.get("spec", {}).get("selector", {}).get("matchLabels"):
            problems.append(f"{name}: no selector.matchLabels")
        for endpoint in monitor.get("spec", {}).get("podMetricsEndpoints", []):
            if endpoint.get("port") not in served:
                problems.append(f"{name}: port {endpoint.get('port')!r} is not one a container serves with --prometheus")
            if endpoint.get("path") != "/metrics":
                problems.append(f"{name}: path {endpoint.get('path')!r}; shardtrain serves /metrics")
    if problems or not monitors:
        print(f"{sys.argv[1]}: " + ("; ".join(problems) or "no PodMonitor"))
        sys.exit(1)


if __name__ == "__main__":
    main()
