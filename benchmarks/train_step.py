"""Training step time with and without the DSR losses, side by side, with a breakdown.

Runs the synthetic recipe's module (``configs/synth_dsr.yaml`` unless ``--config``) on batches of
synthetic data and times, in the same process and on the same batches:

- ``step (no DSR)``: forward, SPIN losses, backward, Adam step;
- ``step (DSR)``: the same with DSR-MC and DSR-C (one render call per batch for the 9 channels);
- the parts: data (one batch through the DataLoader: read, crop, augment, collate), backbone
  (forward+backward), head + body model (forward+backward), render (DSR's soft render
  forward+backward), losses (SPIN + DSR terms and targets, forward+backward on fixed inputs).

Target (DESIGN 10): the DSR step at most 25 % slower than the step without.

    .venv/bin/python benchmarks/train_step.py --data outputs/run/data --batch 16 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/synth_dsr.yaml")
    ap.add_argument("--data", default=None, help="synthetic data folder (made in a temp folder if absent)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = ap.parse_args(argv)
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
        generate(SynthConfig(num=max(2 * args.batch, 32), split="train"), data, workers=2, progress=False)
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
    opt = module.configure_optimizers()
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
        pred = module.model(batch["img"])
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
    t_plain, t_dsr = [], []
    step_fn(False)()
    step_fn(True)()
    for _ in range(args.repeats):
        t_plain += _timeit(step_fn(False), 1, warmup=0)
        t_dsr += _timeit(step_fn(True), 1, warmup=0)

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
    plain, dsr = _med(t_plain), _med(t_dsr)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
