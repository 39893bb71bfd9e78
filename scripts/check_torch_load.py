#!/usr/bin/env python3
"""Checks that PyTorch loads a shardtrain weights file strictly into the same nn.Sequential.

    python3 scripts/check_torch_load.py JOB.yaml WEIGHTS.safetensors
Builds nn.Sequential(Linear, activation, …) from the job's model, calls load_state_dict(strict=True) and prints the
model's outputs on the XOR inputs when the model takes 2 inputs. Needs torch, safetensors and PyYAML.
"""
import sys

import torch
import yaml
from safetensors.torch import load_file

ACTIVATIONS = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh, "gelu": torch.nn.GELU,
               "identity": torch.nn.Identity, "softmax": lambda: torch.nn.Softmax(dim=1)}


def main(job_path, weights_path):
    job = yaml.safe_load(open(job_path))
    state = load_file(weights_path)
    # model.inputs may be left out of a job (taken from the data): the first layer's weight has it, [out, in].
    inputs = job["model"].get("inputs") or state["0.weight"].shape[1]
    width, modules = inputs, []
    for layer in job["model"]["layers"]:
        modules.append(torch.nn.Linear(width, layer["units"]))
        name = layer.get("activation", "identity")
        modules.append(torch.nn.LeakyReLU(layer.get("negative_slope", 0.01)) if name == "leaky_relu"
                       else ACTIVATIONS[name]())
        width = layer["units"]
    model = torch.nn.Sequential(*modules)
    model.load_state_dict(state, strict=True)
    print("strict load_state_dict: ok")
    if inputs == 2:
        print(model(torch.tensor([[0., 0.], [0., 1.], [1., 0.], [1., 1.]])).detach().flatten().numpy().round(2))


if __name__ == "__main__":
    main(*sys.argv[1:])
