"""The body-model registry (body/factory.py): a family registered here is built by ``build_body_model``,
accepted by every command's body options and handled by the library through the ``BodyModel``
capabilities; Anny's and SMPL's entries and capabilities say what the code used to decide by name."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from dsrbody.body import factory
from dsrbody.body.base import BodyModel, BodyOutput
from dsrbody.body.factory import (
    BODY_MODELS,
    DEFAULT_BODY_MODEL,
    BodySpec,
    body_spec,
    build_body_model,
    register_body_model,
    spin_body_model,
)
from dsrbody.body.keypoints import SMPL24

# ------------------------------------------------------------------------------------------------
# A tiny family, registered by the tests that use it
# ------------------------------------------------------------------------------------------------


class Tetra(BodyModel):
    """Two joints, a tetrahedron of 4 vertices; one shape value scales it; the root turns it."""

    name = "tetra"

    def __init__(self, size: float = 1.0):
        super().__init__()
        self.num_joints, self.shape_dim = 2, 1
        self.joint_names = ["root", "tip"]
        self.register_buffer("parents", torch.tensor([-1, 0]))
        self.register_buffer("faces", torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]))
        self.register_buffer("lbs_weights", torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
        self.register_buffer("template", size * torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]))

    def forward(self, global_orient, body_pose, shape):
        self.check_inputs(global_orient, body_pose, shape)
        rest = self.template * (1.0 + self.pad_shape(shape)[:, :1, None])
        verts = rest @ global_orient.transpose(1, 2)
        joints = verts[:, :2]
        return BodyOutput(vertices=verts, joints=joints, skeleton_joints=joints, rest_vertices=rest)

    def mean_params(self):
        eye = torch.eye(3)
        return {"global_orient": eye, "body_pose": eye[None], "shape": torch.zeros(1)}


def _build_tetra(model_path, gender, **kwargs):
    if model_path is not None:
        raise ValueError("tetra needs no model files")
    return Tetra(**kwargs)


@pytest.fixture
def tetra():
    spec = register_body_model(
        BodySpec(name="tetra", label="Tetra", build=_build_tetra, pose_joints=lambda: ("root", "tip"))
    )
    yield spec
    BODY_MODELS.pop("tetra")


def test_a_registered_family_is_built_by_name(tetra):
    assert factory.BODY_MODEL_NAMES == ("anny", "smpl", "tetra")  # derived from the registry
    body = build_body_model("Tetra", size=2.0)  # any case; options go to the family's builder
    assert isinstance(body, Tetra) and body.name == tetra.name
    assert body.template[1, 0] == 2.0
    with pytest.raises(ValueError, match="no model files"):
        build_body_model("tetra", model_path="somewhere")
    with pytest.raises(ValueError, match="gender"):
        build_body_model("tetra", gender="other")
    # the library asks the model, not its name: defaults of the BodyModel interface
    assert body.keypoint_confidence is None and body.shape_bounds is None
    assert body.pad_shape(torch.zeros(3, 0)).shape == (3, 1) and body.default_shape("male") == [0.0]
    assert body.smpl_equivalents == {} and body.limited_joints == ()
    assert body.mesh_name == body.topology_id
    with pytest.raises(NotImplementedError, match="synthetic"):
        body.sample_shape(np.random.default_rng(0))


def test_registration_rules(tetra):
    with pytest.raises(ValueError, match="already registered"):
        register_body_model(tetra)
    assert register_body_model(tetra, replace=True) is tetra
    with pytest.raises(ValueError, match="lower case"):
        register_body_model(BodySpec(name="Tetra", label="T", build=_build_tetra, pose_joints=tuple))
    with pytest.raises(ValueError, match="unknown body model 'nothing'; choose one of: anny, smpl, tetra"):
        build_body_model("nothing")
    assert body_spec("nothing", missing_ok=True) is None


def test_every_command_accepts_a_registered_family(tetra, tmp_path, capsys):
    from dsrbody.cli import COMMANDS, _command_parser, main

    for command, flag in (("body", "--model"), ("render", "--model"), ("synth", "--model"),
                          ("fit", "--body"), ("demo", "--body")):  # fmt: skip
        module = next(m for c, m, _ in COMMANDS if c == command)
        parser, _ = _command_parser(command, module)
        (action,) = [a for a in parser._actions if flag in a.option_strings]
        assert tuple(action.choices) == ("anny", "smpl", "tetra"), command
    parser, _ = _command_parser("prior", "prior")
    args = parser.parse_args(["build", "--procedural", "1", "--model", "tetra", "--out", "p.npz"])
    assert args.model == "tetra" and args.model_path is None

    out = tmp_path / "tetra.obj"
    assert main(["body", "--model", "tetra", "--shape", "1.0", "--out", str(out)]) == 0
    assert "tetra: height 2.000 m (rest pose), 4 vertices, 4 faces" in capsys.readouterr().out
    assert out.is_file()
    # a family with one mesh takes no --topology (the default family's default mesh is its own)
    assert main(["body", "--model", "tetra", "--topology", "notoes_collapse10pc", "--out", str(out)]) == 1
    assert "--topology is an Anny option" in capsys.readouterr().err


def test_a_registered_family_in_the_training_targets(tetra):
    from dsrbody.losses.targets import gt_body, params_valid

    batch = {
        "keypoints": torch.zeros(3, 2, 3),
        "has_smpl": torch.ones(3),  # SPIN's flag: SMPL's parameters, not tetra's
        "has_params": torch.tensor([1.0, 1.0, 0.0]),
        "body_model": ["tetra", "smpl", "tetra"],
        "pose": torch.zeros(3, 6),
        "betas": torch.tensor([[1.0], [0.0], [0.0]]),
    }
    valid = params_valid(batch, "tetra")
    assert valid.tolist() == [True, False, False]
    assert params_valid(batch, "smpl").tolist() == [True, True, True]
    assert float(gt_body(Tetra(), batch, valid).rest_vertices[0, 1, 0]) == 2.0


# ------------------------------------------------------------------------------------------------
# Anny's and SMPL's entries
# ------------------------------------------------------------------------------------------------


def test_shipped_entries():
    from dsrbody.body.anny import ANNY24_BONES, TOPOLOGIES

    assert factory.BODY_MODEL_NAMES == ("anny", "smpl") and DEFAULT_BODY_MODEL == "anny"
    anny, smpl = body_spec("anny"), body_spec("SMPL")
    assert (anny.label, smpl.label) == ("Anny", "SMPL")
    assert anny.topologies == TOPOLOGIES and anny.default_topology == "anny"
    assert smpl.topologies == () and smpl.default_topology is None
    assert (anny.needs_files, smpl.needs_files) == (False, True)
    assert (anny.gendered, smpl.gendered) == (False, True)
    assert (anny.spin_params, smpl.spin_params) == (False, True) and spin_body_model() == "smpl"
    assert (anny.shipped_prior, smpl.shipped_prior) == (True, False)
    assert (anny.shape_field, smpl.shape_field) == ("phenotype", None)
    assert anny.pose_joints() == tuple(ANNY24_BONES) and smpl.pose_joints() is SMPL24
    assert anny.mesh_options("notoes_collapse10pc") == {"topology": "notoes_collapse10pc"}
    assert anny.mesh_options(None) == {} and smpl.mesh_options("anny") == {}


def test_factory_errors_as_before(tmp_path):
    with pytest.raises(ValueError, match="anny needs no model files .*--model-path is for smpl"):
        build_body_model("anny", model_path=tmp_path)
    with pytest.raises(ValueError, match="smpl needs the official model files"):
        build_body_model("smpl")
    with pytest.raises(FileNotFoundError, match="SMPL_FEMALE.pkl or .npz"):
        build_body_model("smpl", model_path=tmp_path / "missing", gender="female")


def test_reading_the_registry_imports_no_torch():
    code = (
        "import sys, argparse; import dsrbody.body.factory as f; from dsrbody.cli.options import "
        "add_body_options; add_body_options(argparse.ArgumentParser(), topology=True); "
        "print('torch' in sys.modules, f.BODY_MODEL_NAMES)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "('anny',", "'smpl')"]


# ------------------------------------------------------------------------------------------------
# Capabilities: what the code outside body/ used to decide by comparing names
# ------------------------------------------------------------------------------------------------


def test_smpl_capabilities(smpl_dir):
    body = build_body_model("smpl", model_path=smpl_dir, gender="female")
    assert body.keypoint_confidence is None  # every SPIN-49 keypoint is real
    assert body.shape_bounds is None  # betas are regressed unbounded
    betas = torch.tensor([[0.5, -1.0]])
    torch.testing.assert_close(body.pad_shape(betas), torch.nn.functional.pad(betas, (0, 8)))  # zeros
    assert body.default_shape("male") == [0.0] * 10 and body.shape_help == "10 betas"
    assert body.check_shape([100.0], "--shape") == [100.0]
    assert body.smpl_equivalents == {n: n for n in SMPL24.names}
    assert body.limited_joints == SMPL24.names[1:]  # every joint but the root
    assert body.mesh_name == body.topology_id
    shape, gender = body.sample_shape(np.random.default_rng(3))
    np.testing.assert_array_equal(shape, np.random.default_rng(3).normal(0.0, 1.0, 10))
    assert gender == "f"


def test_anny_capabilities(anny_body):
    from dsrbody.body.anny import (
        ANNY_LIMITED_JOINTS,
        ANNY_PHENOTYPES,
        ANNY_SMPL_EQUIVALENTS,
        ANNY_SPIN49_SOURCES,
        MID_PHENOTYPES,
        PHENOTYPE_RANGES,
    )

    conf = anny_body.keypoint_confidence
    assert conf.tolist() == [1.0 if src else 0.0 for src in ANNY_SPIN49_SOURCES.values()]
    lo, hi = anny_body.shape_bounds
    assert lo.dtype == hi.dtype == torch.float32
    assert lo.tolist() == [torch.tensor(PHENOTYPE_RANGES[n][0]).item() for n in ANNY_PHENOTYPES]
    assert hi.tolist() == [PHENOTYPE_RANGES[n][1] for n in ANNY_PHENOTYPES]
    torch.testing.assert_close(
        anny_body.pad_shape(torch.tensor([[0.1, 0.2]])), torch.tensor([[0.1, 0.2, *MID_PHENOTYPES[2:]]])
    )
    assert anny_body.default_shape("male") == [0.0, 0.5, 0.5, 0.5, 0.5, 0.5]
    assert anny_body.default_shape("female")[0] == 1.0 and anny_body.default_shape()[0] == 0.5
    assert anny_body.shape_help == ", ".join(ANNY_PHENOTYPES)
    with pytest.raises(ValueError, match="--shape: Anny phenotype weight = 1.5 is out of range"):
        anny_body.check_shape([0.5, 0.5, 0.5, 1.5], "--shape")
    assert anny_body.smpl_equivalents == ANNY_SMPL_EQUIVALENTS
    assert anny_body.limited_joints == ANNY_LIMITED_JOINTS
    assert anny_body.mesh_name == "anny"


def test_anny_synthetic_shapes(anny_body):
    """The shape distribution of ``dsrbody synth``: reproducible from the generator alone."""
    a = anny_body.sample_shape(np.random.default_rng(7))
    b = anny_body.sample_shape(np.random.default_rng(7))
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == ("m" if a[0][0] < 0.5 else "f") and a[0].shape == (6,)
    assert np.all((a[0][[0, 2, 3, 4, 5]] >= 0) & (a[0][[0, 2, 3, 4, 5]] <= 1))
