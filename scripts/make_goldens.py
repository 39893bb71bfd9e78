#!/usr/bin/env python3
"""Makes the PyTorch golden fixtures that Tests/EngineTests compare against.

Run once after changing a case (CI never runs it; it needs `pip install torch==2.13.0+cpu safetensors`):
    python3 scripts/make_goldens.py
Writes Tests/EngineTests/Fixtures/goldens.json and torch-sequential.safetensors. Parameters are given in
shardtrain's flat layout: per linear layer its weight [out, in] row-major, then its bias.
"""
import json
import math
import pathlib

import numpy as np
import torch
from safetensors.torch import save_file

torch.set_default_dtype(torch.float32)
FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "Tests" / "EngineTests" / "Fixtures"
rng = np.random.default_rng(20261129)


def activation_module(name, slope=None):
    return {
        "relu": torch.nn.ReLU(),
        "leaky_relu": torch.nn.LeakyReLU(slope if slope is not None else 0.01),
        "sigmoid": torch.nn.Sigmoid(),
        "tanh": torch.nn.Tanh(),
        "gelu": torch.nn.GELU(),
        "identity": torch.nn.Identity(),
        "softmax": torch.nn.Softmax(dim=1),
    }[name]


def build(inputs, layers):
    """nn.Sequential of Linear + activation modules, parameters drawn from the fixture generator."""
    modules, flat, width = [], [], inputs
    for layer in layers:
        linear = torch.nn.Linear(width, layer["units"])
        w = rng.normal(0, 0.6, size=(layer["units"], width)).astype(np.float32)
        b = rng.normal(0, 0.3, size=(layer["units"],)).astype(np.float32)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w))
            linear.bias.copy_(torch.from_numpy(b))
        flat += w.ravel().tolist() + b.ravel().tolist()
        modules += [linear, activation_module(layer["activation"], layer.get("negative_slope"))]
        width = layer["units"]
    return torch.nn.Sequential(*modules), flat


def flat_grad(model):
    out = []
    for module in model:
        if isinstance(module, torch.nn.Linear):
            out += module.weight.grad.ravel().tolist() + module.bias.grad.ravel().tolist()
    return out


def flat_params(model):
    out = []
    for module in model:
        if isinstance(module, torch.nn.Linear):
            out += module.weight.detach().ravel().tolist() + module.bias.detach().ravel().tolist()
    return out


def loss_value(model, loss, x, y):
    """The loss as shardtrain defines it: logit losses read the output layer before its activation."""
    if loss in ("bce_logits", "cross_entropy"):
        logits = model[:-1](x)
        if loss == "bce_logits":
            return torch.nn.BCEWithLogitsLoss()(logits, y)
        return torch.nn.CrossEntropyLoss()(logits, y.long().squeeze(1) if y.shape[1] == 1 else y)
    out = model(x)
    return {"mse": torch.nn.MSELoss(), "mae": torch.nn.L1Loss(), "bce": torch.nn.BCELoss()}[loss](out, y)


def targets_for(loss, batch, outputs, kind):
    if loss == "cross_entropy" and kind == "index":
        return rng.integers(0, outputs, size=(batch, 1)).astype(np.float32)
    if loss == "cross_entropy":
        p = rng.random((batch, outputs)).astype(np.float32)
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
    if loss in ("bce", "bce_logits"):
        return rng.random((batch, outputs)).round(1).astype(np.float32)
    return rng.normal(0, 1, size=(batch, outputs)).astype(np.float32)


def forward_backward_cases():
    cases = []
    hidden = [("relu", None), ("leaky_relu", 0.1), ("sigmoid", None), ("tanh", None), ("gelu", None),
              ("identity", None)]
    heads = [("mse", "identity", "value"), ("mae", "identity", "value"), ("mae", "sigmoid", "value"),
             ("mse", "softmax", "value"), ("bce", "sigmoid", "value"), ("bce_logits", "identity", "value"),
             ("cross_entropy", "softmax", "index"), ("cross_entropy", "identity", "index"),
             ("cross_entropy", "softmax", "probabilities")]
    combos = [(h, ("mse", "identity", "value")) for h in hidden] + [(("relu", None), head) for head in heads[1:]]
    combos += [(("tanh", None), head) for head in heads[4:]]
    for (act, slope), (loss, out_act, kind) in combos:
        hidden_layer = {"units": 5, "activation": act}
        if slope is not None:
            hidden_layer["negative_slope"] = slope
        layers = [hidden_layer, {"units": 4, "activation": "tanh"}, {"units": 3, "activation": out_act}]
        model, flat = build(3, layers)
        x = rng.normal(0, 1, size=(6, 3)).astype(np.float32)
        y = targets_for(loss, 6, 3, kind)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        value = loss_value(model, loss, xt, yt)
        value.backward()
        cases.append({
            "name": f"{act}-{loss}-{out_act}-{kind}",
            "inputs": 3, "layers": layers, "loss": loss,
            "x": x.ravel().tolist(), "y": y.ravel().tolist(), "target_width": y.shape[1],
            "parameters": flat,
            "output": model(xt).detach().ravel().tolist(),
            "loss_value": value.item(),
            "gradient": flat_grad(model),
        })
    return cases


def optimizer_cases():
    configs = [
        ("sgd", {"lr": 0.1}),
        ("sgd", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
        ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
        ("rmsprop", {"lr": 0.01}),
        ("rmsprop", {"lr": 0.01, "alpha": 0.9, "momentum": 0.9, "centered": True, "weight_decay": 0.01}),
        ("adam", {"lr": 0.01}),
        ("adam", {"lr": 0.01, "betas": [0.8, 0.99], "weight_decay": 0.01, "amsgrad": True}),
        ("adamw", {"lr": 0.01, "weight_decay": 0.1}),
    ]
    classes = {"sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam,
               "adamw": torch.optim.AdamW}
    layers = [{"units": 4, "activation": "tanh"}, {"units": 2, "activation": "identity"}]
    x = rng.normal(0, 1, size=(8, 3)).astype(np.float32)
    y = rng.normal(0, 1, size=(8, 2)).astype(np.float32)
    cases = []
    for name, options in configs:
        model, flat = build(3, layers)
        opt = classes[name](model.parameters(), **options)
        losses = []
        for _ in range(10):
            opt.zero_grad()
            value = torch.nn.MSELoss()(model(torch.from_numpy(x)), torch.from_numpy(y))
            value.backward()
            opt.step()
            losses.append(value.item())
        cases.append({"optimizer": name, "options": options, "inputs": 3, "layers": layers,
                      "x": x.ravel().tolist(), "y": y.ravel().tolist(), "parameters": flat,
                      "losses": losses, "final_parameters": flat_params(model)})
    return cases


def schedule_cases():
    def run(make, units=30):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=0.1)
        sched = make(opt)
        rates = []
        for _ in range(units):
            rates.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return rates

    S = torch.optim.lr_scheduler
    return [
        {"schedule": {"name": "constant"}, "rates": run(lambda o: S.ConstantLR(o, factor=1.0))},
        {"schedule": {"name": "step", "step_size": 7, "gamma": 0.5}, "rates": run(lambda o: S.StepLR(o, 7, 0.5))},
        {"schedule": {"name": "exponential", "gamma": 0.9}, "rates": run(lambda o: S.ExponentialLR(o, 0.9))},
        {"schedule": {"name": "cosine", "t_max": 10, "eta_min": 0.001},
         "rates": run(lambda o: S.CosineAnnealingLR(o, 10, 0.001), units=10)},
        {"schedule": {"name": "cosine", "t_max": 20, "warmup": 5},
         "rates": run(lambda o: S.SequentialLR(o, [S.LinearLR(o, 1 / 3, total_iters=5),
                                                  S.CosineAnnealingLR(o, 20)], milestones=[5]), units=25)},
        {"schedule": {"name": "step", "step_size": 4, "gamma": 0.5, "warmup": 3, "warmup_start_factor": 0.1},
         "rates": run(lambda o: S.SequentialLR(o, [S.LinearLR(o, 0.1, total_iters=3), S.StepLR(o, 4, 0.5)],
                                               milestones=[3]))},
    ]


def sequential_fixture():
    layers = [{"units": 4, "activation": "relu"}, {"units": 2, "activation": "sigmoid"}]
    model, flat = build(3, layers)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(FIXTURES / "torch-sequential.safetensors"))
    return {"inputs": 3, "layers": layers, "parameters": flat}


def xoshiro_reference(seed, stream, count):
    """xoshiro256** seeded through SplitMix64 as shardtrain's Xoshiro does, written independently in Python."""
    mask = (1 << 64) - 1
    state = (seed ^ (stream * 0xD1B54A32D192ED03)) & mask

    def splitmix():
        nonlocal state
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    splitmix()
    s = [splitmix() for _ in range(4)]
    rotl = lambda x, k: ((x << k) | (x >> (64 - k))) & mask
    out = []
    for _ in range(count):
        out.append(str((rotl((s[1] * 5) & mask, 7) * 9) & mask))
        t = (s[1] << 17) & mask
        s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
    return out


def initialisation_reference():
    """shardtrain's default initialisation of 2→3 relu→1 sigmoid with seed 7, recomputed in numpy float32 from the
    Python generator: He-uniform bound sqrt(6/fan_in) for ReLU, Xavier-uniform sqrt(6/(fan_in+fan_out)) otherwise."""
    draws = iter(int(v) for v in xoshiro_reference(7, 1, 64))
    f32 = np.float32
    flat = []
    for fan_in, fan_out, he in [(2, 3, True), (3, 1, False)]:
        bound = np.sqrt(f32(6) / f32(fan_in)) if he else np.sqrt(f32(6) / f32(fan_in + fan_out))
        for _ in range(fan_in * fan_out):
            u = f32(next(draws) >> 40) * f32(2.0 ** -24)
            flat.append(float((f32(2) * u - f32(1)) * bound))
        flat += [0.0] * fan_out
    return {"seed": 7, "parameters": flat}


def npy_fixtures():
    """Small .npy files written by numpy itself, good and bad."""
    np.save(FIXTURES / "features-f4.npy", np.array([[1.5, -2], [3, 4.25], [0, 1]], dtype="<f4"))
    np.save(FIXTURES / "features-f8.npy", np.array([[1.5, -2], [3, 4.25], [0, 1]], dtype="<f8"))
    np.save(FIXTURES / "targets-i8.npy", np.array([2, 0, 1], dtype="<i8"))
    np.save(FIXTURES / "targets-i4.npy", np.array([[2], [0], [1]], dtype="<i4"))
    np.save(FIXTURES / "bad-fortran.npy", np.asfortranarray(np.ones((3, 2), dtype="<f4")))
    np.save(FIXTURES / "bad-bigendian.npy", np.ones((3, 2), dtype=">f4"))
    np.save(FIXTURES / "bad-3d.npy", np.ones((2, 2, 2), dtype="<f4"))
    np.save(FIXTURES / "bad-dtype.npy", np.ones((3, 2), dtype="<u2"))
    data = (FIXTURES / "features-f4.npy").read_bytes()
    (FIXTURES / "bad-truncated.npy").write_bytes(data[:-3])


def large_target_case():
    """A regression whose targets reach 6.5e6 (per-micro-shard loss sums near 1e14): 21 SGD steps over batches of
    32 in order. Its own generator, so the other cases do not move when it changes."""
    r = np.random.default_rng(7)
    x = r.normal(0, 1, size=(96, 6)).astype(np.float32)
    w = r.normal(0, 1, size=(6, 1))
    y = (1e6 * (x @ w + 0.1 * r.normal(0, 1, size=(96, 1)))).astype(np.float32)
    layers = [{"units": 1, "activation": "identity"}]
    model = torch.nn.Sequential(torch.nn.Linear(6, 1))
    start = r.normal(0, 0.5, size=7).astype(np.float32)
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(start[:6].reshape(1, 6)))
        model[0].bias.copy_(torch.from_numpy(start[6:]))
    options = {"lr": 0.1, "momentum": 0.5}
    opt = torch.optim.SGD(model.parameters(), **options)
    losses = []
    for _ in range(7):
        for b in range(3):
            xb, yb = torch.from_numpy(x[b * 32:(b + 1) * 32]), torch.from_numpy(y[b * 32:(b + 1) * 32])
            opt.zero_grad()
            value = torch.nn.MSELoss()(model(xb), yb)
            value.backward()
            opt.step()
            losses.append(value.item())
    return {"optimizer": "sgd", "options": options, "inputs": 6, "layers": layers, "batch_size": 32,
            "x": x.ravel().tolist(), "y": y.ravel().tolist(), "parameters": start.tolist(),
            "losses": losses, "final_parameters": flat_params(model)}


def main():
    FIXTURES.mkdir(parents=True, exist_ok=True)
    npy_fixtures()
    goldens = {
        "xoshiro": {"seed": 42, "stream": 3, "outputs": xoshiro_reference(42, 3, 6)},
        "initialisation": initialisation_reference(),
        "torch_version": torch.__version__,
        "forward_backward": forward_backward_cases(),
        "optimizers": optimizer_cases(),
        "schedules": schedule_cases(),
        "sequential": sequential_fixture(),
        "large_targets": large_target_case(),
    }
    for case in goldens["forward_backward"]:
        assert all(math.isfinite(v) for v in case["gradient"]), case["name"]
    (FIXTURES / "goldens.json").write_text(json.dumps(goldens))
    print(f"wrote {FIXTURES / 'goldens.json'}: {len(goldens['forward_backward'])} forward/backward cases, "
          f"{len(goldens['optimizers'])} optimizer runs, {len(goldens['schedules'])} schedules")


if __name__ == "__main__":
    main()
