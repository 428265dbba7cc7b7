"""The dataset card (``README.md``) written beside a synthetic dataset."""

from __future__ import annotations

from dsrbody.data.synth.poses import POSE_FAMILIES

__all__ = ["dataset_card"]


def dataset_card(splits: dict[str, dict], command: str | None = None) -> str:
    """Markdown describing the splits in a synthetic dataset folder and the distributions used.

    Args:
        splits: split name -> its configuration (as stored in ``synth_<split>.json``).
        command: the command line that made the latest split.
    """
    from dsrbody.garments.outfit import BOTTOM_CHOICES, HAIR_CHOICES, OUTFIT_PROBS, TOP_CHOICES

    lines = [
        "# dsrbody synthetic clothed-human dataset",
        "",
        "Made by `dsrbody synth` (dsrbody.data.synth). Exact body ground truth under procedural clothing,",
        "in the SPIN/DSR annotation format.",
        "",
        "## Splits",
        "",
        "| split | samples | seed | body model | resolution | hard clothing | command |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in sorted(splits.items()):
        cmd = f"`{c.get('command')}`" if c.get("command") else ""
        lines.append(
            f"| {name} | {c['num']} | {c['seed']} | {c['model']} | {c['res']} | {c['hard']} | {cmd} |"
        )
    fam = ", ".join(f"{k} {v:.2f}" for k, v in POSE_FAMILIES.items())

    def choice(c: tuple) -> str:
        names, pn, ph = c
        return ", ".join(f"{n} {a:.2f}/{b:.2f}" for n, a, b in zip(names, pn, ph))

    lines += [
        "",
        "## Files",
        "",
        "- `images/<split>_<index>.jpg`: the RGB images (JPEG, quality 92).",
        "- `grph_sequences/images/<split>_<index>.png`: parsing maps, colour PNGs in the CIHP palette",
        "  (20 labels, as Graphonomy's universal model writes them).",
        "- `synth_<split>.npz`: `imgname, center, scale` (box side / 200), `part (N,24,3)` and",
        "  `openpose (N,25,3)` 2D keypoints in pixels with visibility as confidence (0 also for keypoints",
        "  the body model does not provide), `S (N,24,4)` 3D joints in the camera frame (metres, with",
        "  availability), `pose (N,72)` axis-angle (global orientation in the camera convention, then the",
        "  23 relative joint rotations of the body model's own rig), `shape` (SMPL betas or Anny's 6",
        "  phenotypes), `has_smpl`, `has_params`, `gender`, `body_model`, `phenotype` (Anny), the camera",
        "  (`cam_t`, `focal_length`, `principal_point`), `truncated`, `pose_family`, `outfit` (JSON).",
        "",
        "## Distributions",
        "",
        "- Bodies (Anny): anny's WHO-calibrated phenotype distribution, morphological ages 16-80, both",
        "  genders (continuous gender phenotype), 20 % of samples with weight pushed to [0, 0.15] or",
        "  [0.85, 1]. SMPL: betas ~ N(0, I), gender male/female with p = 0.5.",
        f"- Poses: families {fam}; per-joint noise 0.08 rad, clamped to joint limits",
        "  (dsrbody.data.synth.poses); yaw uniform in [0, 2 pi); tilt N(0, 0.08) and N(0, 0.06) rad.",
        "- Outfits (probability normal / hard): top "
        + choice(TOP_CHOICES)
        + "; bottom "
        + choice(BOTTOM_CHOICES)
        + "; hair "
        + choice(HAIR_CHOICES)
        + "; "
        + ", ".join(f"{k} {a:.2f}/{b:.2f}" for k, (a, b) in OUTFIT_PROBS.items())
        + ".",
        "- Camera: focal length 2.5-6 x image size, person filling 62-90 % of the image (10 % of",
        "  samples truncated: 100-150 %, centre jitter 25 %); box = 1.2 x the tight person box,",
        "  jittered 5 %.",
        "- Appearance: Lambert shading with a random key light, skin tones light to dark, hair colours,",
        "  garment colours (neutrals half the time) with plain/noise/stripes/checks/print textures;",
        "  backgrounds procedural or scikit-image sample photographs (no people), cropped and recoloured.",
        "",
        "Every sample is a pure function of (seed, split, index).",
    ]
    if command:
        lines += ["", f"Latest command: `{command}`"]
    return "\n".join(lines) + "\n"
