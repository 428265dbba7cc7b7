"""Training step time with and without the DSR losses, side by side, with a breakdown.

Runs the synthetic recipe's module (``configs/synth_dsr.yaml`` unless ``--config``) on batches of
synthetic data and times, in the same process and on the same batches:

- ``step (no DSR)``: forward, SPIN losses, backward, Adam step;
- ``step (DSR)``: the same with DSR-MC and DSR-C (one render call per batch for the 9 channels);
- the parts: data (one batch through the DataLoader: read, crop, augment, collate), backbone
  (forward+backward), head + body model (forward+backward), render (DSR's soft render
  forward+backward), losses (SPIN + DSR terms and targets, forward+backward on fixed inputs).

Target (docs/design.md, Performance targets): the DSR step at most 25 % slower than the step without.

Then training throughput, in images per second of a full optimiser step (forward, the recipe's losses,
backward, Adam), side by side in the same process on the same samples (each cropped at its recipe's
size), calls alternating (``benchmarks/_timing.py``):

- the CPU recipe ``configs/synth_cpu.yaml`` (ResNet-18, 96 px crops, channels-last, batch 64), or
  ``--cpu-config configs/synth_blazepose.yaml`` (the shipped model's: the head on the frozen BlazePose
  backbone's cached features, built first for the benchmark's data);
- the paper's setting: ``configs/synth_baseline.yaml`` with ``model.backbone=resnet50 model.img_res=224``
  at the same batch size;

and their ratio; then data loading alone, in images per second of the recipe's own DataLoader
(:class:`~dsrbody.train.datamodule.DSRDataModule`: its ``num_workers``, shuffling, collation), for both
crop sizes. ``--quick`` is a smoke run (tiny batches, one repeat).

    .venv/bin/python benchmarks/train_step.py --data outputs/run/data --batch 16 --repeats 5
    .venv/bin/python benchmarks/train_step.py --quick
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from _timing import time_alternating

CPU_CONFIG = "configs/synth_cpu.yaml"
PAPER_CONFIG = "configs/synth_baseline.yaml"
PAPER_OVERRIDES = ("model.backbone=resnet50", "model.img_res=224", "model.channels_last=false")


def _timeit(fn, repeats: int, warmup: int = 1) -> list[tuple[float, float]]:
    """``[(wall s, process CPU s), ...]`` (CPU time is steadier on a shared machine)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        out.append((time.perf_counter() - t0, time.process_time() - c0))
    return out


def _med(ts: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(t for t, _ in ts), statistics.median(c for _, c in ts)


def _optimizer(module) -> torch.optim.Optimizer:
    """The module's optimiser (``configure_optimizers`` returns a dict when a schedule is configured)."""
    out = module.configure_optimizers()
    return out["optimizer"] if isinstance(out, dict) else out


def _data_overrides(config: str, data: str) -> list[str]:
    """Overrides pointing every training set of ``config`` at ``data/synth_train.npz``."""
    from dsrbody.train import load_config

    n = len(load_config(config).data.train)
    out = []
    for k in range(n):
        out += [f"data.train.{k}.npz={data}/synth_train.npz", f"data.train.{k}.img_dir={data}"]
    return out + ["data.val=[]", "data.test=[]", "logging.images_every_n_steps=0"]


def _label(cfg, batch: int) -> str:
    m = cfg.model
    cl = ", channels-last" if bool(m.channels_last) else ""
    return f"{Path(str(cfg.name)).name}: {m.backbone} {int(m.img_res)} px{cl}, batch {batch}"


def _full_step(module, opt, batches: list, dsr: bool):
    """One optimiser step per call, cycling through ``batches``: forward, losses, backward, Adam."""
    k = itertools.count()

    def step() -> None:
        batch = batches[next(k) % len(batches)]
        opt.zero_grad(set_to_none=True)
        pred = module.predict_batch(batch)  # cached backbone features, or the images (channels-last if set)
        total, _, _, _ = module.compute_losses(batch, pred, dsr)
        total.backward()
        opt.step()

    return step


def throughput(args, data: str) -> None:
    """Images per second of a full optimiser step, CPU recipe vs the paper's setting, and of the data."""
    from dsrbody.data import collate_samples
    from dsrbody.train import load_config
    from dsrbody.train.build import attach_feature_caches, build_dataset
    from dsrbody.train.datamodule import DSRDataModule
    from dsrbody.train.module import DSRModule

    B = args.throughput_batch
    cfgs = {
        "recipe": load_config(
            args.cpu_config, _data_overrides(args.cpu_config, data) + [f"data.batch_size={B}"]
        ),
        "paper": load_config(
            args.paper_config,
            _data_overrides(args.paper_config, data) + [f"data.batch_size={B}"] + list(args.paper_overrides),
        ),
    }
    fns, labels = [], []
    for cfg in cfgs.values():
        torch.manual_seed(0)
        module = DSRModule(cfg)
        module.train()
        opt = _optimizer(module)
        # the same samples for both settings (the first training set, cropped at the recipe's size)
        ds = build_dataset(cfg.data.train[0], cfg, augment=bool(cfg.data.augment))
        if bool(cfg.model.get("feature_cache", False)):  # the backbone's frozen part is read from its cache
            attach_feature_caches([ds], cfg, progress=False)
        batches = [collate_samples([ds[(j * B + i) % len(ds)] for i in range(B)]) for j in range(2)]
        fns.append(_full_step(module, opt, batches, dsr=module.dsr_enabled))  # as after loss.start_dsr
        labels.append(_label(cfg, B))
    wall, cpu = time_alternating(fns, args.throughput_repeats, warmup=1)
    print()
    print(
        f"training throughput: full optimiser step (forward, losses, backward, Adam), batch {B}, "
        f"{args.threads} threads, median of {args.throughput_repeats}, alternating"
    )
    print(f"{'':58s} {'wall ms':>9s} {'CPU ms':>9s} {'img/s':>8s}")
    rate = []
    for name, w, c in zip(labels, wall, cpu):
        rate.append(B / (w / 1e3))
        print(f"{name:58s} {w:9.1f} {c:9.1f} {rate[-1]:8.1f}")
    print(f"{'ratio (recipe / paper setting)':58s} {wall[1] / wall[0]:9.2f}x {cpu[1] / cpu[0]:8.2f}x")

    print()
    print(
        f"data loading alone (the recipe's DataLoader), batch {B}, "
        f"{args.data_batches} batches after the first"
    )
    print(f"{'':58s} {'workers':>7s} {'first s':>8s} {'img/s':>8s}")
    for cfg, name in zip(cfgs.values(), labels):
        n = args.data_batches
        dm = DSRDataModule(cfg)
        cfg.data.epoch_length = (n + 1) * B  # one epoch of n + 1 batches, whatever the data size
        dm.setup("fit")
        loader = dm.train_dataloader()
        t0 = time.perf_counter()
        it = iter(loader)
        next(it)  # worker start-up and the first batch
        first = time.perf_counter() - t0
        t1 = time.perf_counter()
        got = sum(int(next(it)["img"].shape[0]) for _ in range(n))
        dt = time.perf_counter() - t1
        print(f"{name:58s} {int(cfg.data.num_workers):7d} {first:8.2f} {got / dt:8.1f}")
        del it, loader


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/synth_dsr.yaml")
    ap.add_argument("--data", default=None, help="synthetic data folder (made in a temp folder if absent)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cpu-config", default=CPU_CONFIG, help="the CPU recipe of the throughput comparison")
    ap.add_argument("--paper-config", default=PAPER_CONFIG, help="the paper setting's recipe")
    ap.add_argument(
        "--paper-overrides",
        nargs="*",
        default=list(PAPER_OVERRIDES),
        help="overrides making --paper-config the paper's setting (default: ResNet-50, 224 px)",
    )
    ap.add_argument("--throughput-batch", type=int, default=64, help="batch of both throughput settings")
    ap.add_argument("--throughput-repeats", type=int, default=5)
    ap.add_argument("--data-batches", type=int, default=10, help="batches timed for the data loading")
    ap.add_argument("--no-throughput", action="store_true", help="only the DSR comparison and breakdown")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny batches, one repeat")
    ap.add_argument("overrides", nargs="*", help="config overrides key=value (of --config)")
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.repeats = min(args.batch, 4), 1
        args.throughput_batch, args.throughput_repeats, args.data_batches = 4, 1, 2
    torch.set_num_threads(args.threads)

    from dsrbody.data import collate_samples
    from dsrbody.losses import combine_losses, spin_loss_terms
    from dsrbody.train import load_config
    from dsrbody.train.build import build_train_set
    from dsrbody.train.module import DSRModule

    data = args.data
    if data is None or not (Path(data) / "synth_train.npz").is_file():
        from dsrbody.data.synth import SynthConfig, generate

        data = data or tempfile.mkdtemp(prefix="dsrbody_bench_")
        num = max(2 * args.batch, 2 * args.throughput_batch, 8 if args.quick else 32)
        generate(SynthConfig(num=num, split="train"), data, workers=2, progress=False)
    cfg = load_config(
        args.config,
        [
            f"data.root={data}",
            f"data.batch_size={args.batch}",
            "loss.start_dsr=-1",
            "logging.images_every_n_steps=0",
        ]
        + list(args.overrides),
    )
    module = DSRModule(cfg)
    module.train()
    opt = _optimizer(module)
    dataset = build_train_set(cfg)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch, shuffle=False, collate_fn=collate_samples
    )
    it = iter(loader)

    def next_batch():
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(loader)
            return next(it)

    batches = [next_batch() for _ in range(2)]
    t_data = _timeit(next_batch, args.repeats, warmup=0)

    def step(dsr: bool, batch) -> None:
        opt.zero_grad(set_to_none=True)
        pred = module(batch["img"])
        total, _, _, _ = module.compute_losses(batch, pred, dsr)
        total.backward()
        opt.step()

    k = {"i": 0}

    def step_fn(dsr: bool):
        def f():
            step(dsr, batches[k["i"] % 2])
            k["i"] += 1

        return f

    # interleave the two variants so that load from other processes hits both alike
    (w_plain, w_dsr), (c_plain, c_dsr) = time_alternating([step_fn(False), step_fn(True)], args.repeats, 1)

    batch = batches[0]
    imgs = batch["img"]
    model = module.model

    def backbone():
        model.zero_grad(set_to_none=True)
        model.backbone(imgs).sum().backward()

    with torch.no_grad():
        feats = model.backbone(imgs)

    def head():
        model.zero_grad(set_to_none=True)
        out = model.head(feats)
        (out["pose6d"].sum() + out["shape"].sum() + out["cam"].sum()).backward()

    def body_model():
        with torch.no_grad():
            h = model.head(feats)
        rot = h["pose6d"].reshape(feats.shape[0], -1, 6)
        from dsrbody.geometry.rotations import rot6d_to_matrix

        R = rot6d_to_matrix(rot).detach().requires_grad_(True)
        shape = model.shape_from_raw(h["shape"]).detach().requires_grad_(True)
        out = model.body_model(R[:, 0], R[:, 1:], shape)
        (out.vertices.sum() + out.joints.sum()).backward()

    with torch.no_grad():
        pred = {k2: v.detach() for k2, v in model.forward_features(feats).items()}
    targets = module.dsr_targets(batch)

    def render():
        v = pred["vertices_cam"].clone().requires_grad_(True)
        mc, cls, sil = module.dsr_loss.render(v, targets.mc_present)
        (mc.sum() + cls.sum()).backward()

    v_leaf = pred["vertices_cam"].clone()
    with torch.no_grad():
        mc_r, cls_r, sil_r = module.dsr_loss.render(v_leaf, targets.mc_present)

    def losses():
        from dsrbody.losses import dsr_c_loss, dsr_mc_loss

        p = {k2: (v.clone().requires_grad_(True) if v.is_floating_point() else v) for k2, v in pred.items()}
        tg = module.dsr_targets(batch)
        terms = spin_loss_terms(p, module.loss_targets(batch), module.weights)
        r_mc = mc_r.clone().requires_grad_(True)
        r_cls = cls_r.clone().requires_grad_(True)
        terms["dsr_mc"] = (dsr_mc_loss(r_mc, tg.mc_mask), tg.valid())
        terms["dsr_c"] = (dsr_c_loss(r_cls, tg.merged, tg.class_weights), tg.valid())
        total, _, _ = combine_losses(terms, module.weights)
        total.backward()

    parts = {
        "data (1 batch, DataLoader, 0 workers)": t_data,
        "backbone fwd+bwd": _timeit(backbone, args.repeats),
        "HMR head (3 IEF iterations) fwd+bwd": _timeit(head, args.repeats),
        "body model fwd+bwd": _timeit(body_model, args.repeats),
        "DSR render fwd+bwd (9 channels)": _timeit(render, args.repeats),
        "losses + DSR targets fwd+bwd": _timeit(losses, args.repeats),
    }
    print(
        f"training step, batch {args.batch}, {cfg.model.backbone}, body {cfg.body.name} "
        f"({getattr(module.body, 'topology', '')}, {module.body.faces.shape[0]} faces), "
        f"{args.threads} threads, median of {args.repeats}"
    )
    print(f"{'':50s} {'wall ms':>9s} {'CPU ms':>9s}")
    plain, dsr = (w_plain / 1e3, c_plain / 1e3), (w_dsr / 1e3, c_dsr / 1e3)
    print(
        f"{'step without DSR (fwd, SPIN losses, bwd, Adam)':50s} {plain[0] * 1e3:9.1f} {plain[1] * 1e3:9.1f}"
    )
    print(f"{'step with DSR-MC + DSR-C':50s} {dsr[0] * 1e3:9.1f} {dsr[1] * 1e3:9.1f}")
    rw, rc = dsr[0] / plain[0], dsr[1] / plain[1]
    print(f"{'DSR overhead (target <= 25 %)':50s} {100 * (rw - 1):8.1f}% {100 * (rc - 1):8.1f}%")
    print("breakdown:")
    for name, ts in parts.items():
        w, c = _med(ts)
        print(f"  {name:48s} {w * 1e3:9.1f} {c * 1e3:9.1f}")
    if not args.no_throughput:
        throughput(args, str(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
