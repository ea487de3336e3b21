# Attach the relearning attack to any Lightning run of an UnlearnModule (digits, CPU, seconds).
import copy

import lightning
import torch
import torch.nn.functional as F

import baselines  # noqa: F401  (registers the methods)
from benchmark.callbacks import RelearnAttack, RelearnTarget
from benchmark.callbacks.relearn import mean_delay, relearning_levels
from benchmark.data import load_dataset
from benchmark.data.splits import make_split
from benchmark.data.transforms import BatchTransform
from benchmark.models import build_model, trainable_state
from benchmark.module import METHODS, UnlearnData

torch.set_num_threads(1)
ds = load_dataset("digits")
split = make_split(ds.train_y.numpy(), "random", 0.1, seed=0, train_subset=300)
tf = BatchTransform(ds.mean, ds.std)


def train(idx, epochs=30):  # any training of your own: here a plain PyTorch loop
    torch.manual_seed(0)
    net = build_model("digits_mlp", ds.num_classes, ds.in_channels)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for _ in range(epochs):
        for b in torch.as_tensor(idx)[torch.randperm(len(idx))].split(64):
            loss = F.cross_entropy(net(tf(ds.train_x[b], train=True)), ds.train_y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net


original, oracle = train(split.train), train(split.retain)  # theta_o on D, theta_r on D_r
fx, fy = ds.train_x[split.forget], ds.train_y[split.forget]
target = RelearnTarget(fx, fy, fx, fy, tf)  # relearn on D_f, evaluate on all of D_f
levels = relearning_levels(original, oracle, fx, fy, tf)  # L_o, L_r, A_o, A_r
theta_o_params = trainable_state(original)

data = UnlearnData(images=ds.train_x, labels=ds.train_y, forget=torch.as_tensor(split.forget),
                   retain=torch.as_tensor(split.retain), transform=tf, num_classes=ds.num_classes)
# any UnlearnModule; here IEU, the method of the paper behind RCD
method = METHODS.get("ieu")(copy.deepcopy(original), data, epochs=5, batch_size=16)
attack = RelearnAttack(target, {"sgd": {"lr": 0.01, "momentum": 0.9, "batch_size": 128}},
                       max_steps=400, eval_every=4, seed=0, original_state=theta_o_params, repeats=3)
trainer = lightning.Trainer(max_epochs=method.total_epochs, callbacks=[attack], accelerator="cpu",
                            logger=False, enable_checkpointing=False, enable_progress_bar=False)
trainer.fit(method)
runs = {"unlearned": attack.curves["sgd"]}  # one Curve per repeat: .steps, .loss, .acc on D_f per step
for name, net in (("original", original), ("oracle", oracle)):  # the same attack on the references
    runs[name] = attack.run(net)["sgd"]
steps = {}
for name, curves in runs.items():
    d = mean_delay(curves, levels, "acc")  # T_acc: first step with forget accuracy >= A*, mean over repeats
    steps[name] = d.mean
    print(f"T_acc {name}: {d.mean:g}{'+ (censored)' if d.censored else ''}")
why = levels.acc_undefined_reason or ("oracle at A* at step 0" if steps["oracle"] == 0 else None)
print(f"RCD_acc sgd: undefined ({why})" if why else f"RCD_acc sgd: {steps['unlearned'] / steps['oracle']:.3f}")
