"""Checks a Kubeflow PyTorchJob manifest as the training operator reads it, without a cluster.

Writes into OUT: every non-PyTorchJob document, and each replica's pod template as a v1 Pod, for kubernetes-validate;
and each ConfigMap's job.yaml as jobs/job-N.yaml, for shardtrain to train. Exits 1 naming the first problem.
"""
import os
import sys

import yaml

path, out = sys.argv[1], sys.argv[2]
problems = []
jobs = 0
with open(path) as f:
    documents = [d for d in yaml.safe_load_all(f) if d]
for index, doc in enumerate(documents):
    if doc.get("kind") == "ConfigMap" and "job.yaml" in doc.get("data", {}):
        jobs += 1
        os.makedirs(os.path.join(out, "jobs"), exist_ok=True)
        with open(os.path.join(out, "jobs", f"job-{jobs}.yaml"), "w") as f:
            f.write(doc["data"]["job.yaml"])
    if doc.get("kind") != "PyTorchJob":
        with open(os.path.join(out, f"doc-{index}.yaml"), "w") as f:
            yaml.safe_dump(doc, f)
        continue
    if doc.get("apiVersion") != "kubeflow.org/v1":
        problems.append(f"apiVersion {doc.get('apiVersion')!r}; the training operator serves kubeflow.org/v1")
    spec = doc.get("spec", {})
    unknown = set(spec) - {"pytorchReplicaSpecs", "runPolicy", "elasticPolicy", "nprocPerNode"}
    if unknown:
        problems.append(f"unknown spec fields {sorted(unknown)}")
    replicas = spec.get("pytorchReplicaSpecs", {})
    if set(replicas) - {"Master", "Worker"} or "Master" not in replicas:
        problems.append(f"replica types {sorted(replicas)}; expected Master (and Worker)")
    if replicas.get("Master", {}).get("replicas") != 1:
        problems.append("the Master must have exactly 1 replica (it is rank 0, the coordinator)")
    for kind, replica in replicas.items():
        unknown = set(replica) - {"replicas", "restartPolicy", "template"}
        if unknown:
            problems.append(f"{kind}: unknown fields {sorted(unknown)}")
        if replica.get("restartPolicy") not in {"Always", "OnFailure", "Never", "ExitCode"}:
            problems.append(f"{kind}: restartPolicy {replica.get('restartPolicy')!r}")
        if not isinstance(replica.get("replicas"), int) or replica["replicas"] < 1:
            problems.append(f"{kind}: replicas must be a positive integer")
        pod = replica.get("template", {}).get("spec", {})
        names = [c.get("name") for c in pod.get("containers", [])]
        if "pytorch" not in names:
            problems.append(f"{kind}: no container named 'pytorch' (the operator sets the variables in that one)")
        secrets = {v["name"] for v in pod.get("volumes", []) if "secret" in v}
        for container in pod.get("containers", []):
            if container.get("args", [None])[0] != "launch" and container.get("command", [None])[-1:] != ["launch"]:
                problems.append(f"{kind}: container {container.get('name')} does not run `shardtrain launch`")
            # The coordinator listens on the pod's address: without a key it refuses to start (or runs in the clear).
            if "--key" not in container.get("args", []):
                problems.append(f"{kind}: container {container.get('name')} has no --key")
            mounted = {m["name"] for m in container.get("volumeMounts", [])}
            if not secrets & mounted:
                problems.append(f"{kind}: container {container.get('name')} mounts no Secret for its key")
        with open(os.path.join(out, f"pod-{kind}.yaml"), "w") as f:
            yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": kind.lower()}, "spec": pod}, f)
if problems:
    print(f"{path}: " + "; ".join(problems))
    sys.exit(1)
