"""``dsrbody body``: writes meshes, reads pose files, and reports bad input as one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from dsrbody.body.parts import BODY_PARTS, vertex_body_parts
from dsrbody.cli import main
from dsrbody.cli.body import PART_COLOURS

EXAMPLE = "examples/pose_wave.json"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["body", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _error_line(capsys, *argv: str) -> str:
    rc, out, err = _run(capsys, *argv)
    assert rc == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dsrbody body: error: ")
    return lines[0]


def test_writes_posed_anny_obj(anny_body, tmp_path, capsys):
    out = tmp_path / "sub" / "anny_posed.obj"
    rc, stdout, _ = _run(capsys, "--model", "anny", "--pose-file", EXAMPLE, "--out", str(out))
    assert rc == 0
    assert "13718 vertices" in stdout and "27420 faces" in stdout
    height = float(stdout.split("height ")[1].split(" m")[0])
    assert 1.5 < height < 1.8
    mesh = trimesh.load(out, process=False)
    assert mesh.vertices.shape == (13718, 3) and mesh.faces.shape == (27420, 3)
    # the waving right hand (-x) is raised above the head
    v = np.asarray(mesh.vertices)
    top = v[v[:, 1].argmax()]
    assert top[0] < -0.3
    assert v[:, 1].max() - v[:, 1].min() > height


def test_ply_carries_body_part_colours(anny_body, tmp_path, capsys):
    out = tmp_path / "rest.ply"
    rc, _, _ = _run(capsys, "--out", str(out), "--shape", "1.0", "0.7")
    assert rc == 0
    mesh = trimesh.load(out, process=False)
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3]
    parts = vertex_body_parts(anny_body).numpy()
    expected = np.asarray(PART_COLOURS, dtype=np.uint8)[parts]
    assert np.array_equal(colours, expected)
    assert len(PART_COLOURS) == len(BODY_PARTS) and len(set(PART_COLOURS)) == len(PART_COLOURS)


def test_pose_file_forms_agree(anny_body, tmp_path, capsys):
    """A pose by joint name (JSON), the same as a flat list, as an SMPL-style 'pose' array in an NPZ."""
    names = anny_body.joint_names
    rng = np.random.default_rng(0)
    aa = 0.3 * rng.standard_normal((24, 3))
    by_name = {
        "global_orient": aa[0].tolist(),
        "body_pose": {n: aa[i].tolist() for i, n in enumerate(names) if i},
    }
    (tmp_path / "a.json").write_text(json.dumps(by_name))
    (tmp_path / "b.json").write_text(
        json.dumps({"global_orient": aa[0].tolist(), "body_pose": aa[1:].ravel().tolist()})
    )
    np.savez(tmp_path / "c.npz", pose=aa[None].reshape(1, 72))
    meshes = []
    for f in ("a.json", "b.json", "c.npz"):
        rc, _, err = _run(capsys, "--pose-file", str(tmp_path / f), "--out", str(tmp_path / f"{f}.obj"))
        assert rc == 0, err
        meshes.append(np.asarray(trimesh.load(tmp_path / f"{f}.obj", process=False).vertices))
    assert np.allclose(meshes[0], meshes[1], atol=1e-5) and np.allclose(meshes[0], meshes[2], atol=1e-5)


def test_smpl_names_pose_anny(anny_body, tmp_path, capsys):
    a = {"body_pose": {"left_elbow": [0.0, 1.0, 0.0]}}
    b = {"body_pose": {"lowerarm01.L": [0.0, 1.0, 0.0]}}
    outs = []
    for name, doc in (("a", a), ("b", b)):
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
        assert (
            _run(
                capsys, "--pose-file", str(tmp_path / f"{name}.json"), "--out", str(tmp_path / f"{name}.obj")
            )[0]
            == 0
        )
        outs.append(np.asarray(trimesh.load(tmp_path / f"{name}.obj", process=False).vertices))
    assert np.allclose(outs[0], outs[1])


def test_smpl_from_generated_files(smpl_dir, tmp_path, capsys):
    out = tmp_path / "smpl.ply"
    rc, stdout, err = _run(
        capsys, "--model", "smpl", "--model-path", str(smpl_dir), "--gender", "female",
        "--pose-file", EXAMPLE, "--out", str(out),
    )  # fmt: skip
    assert rc == 0, err
    assert "6890 vertices" in stdout and "13776 faces" in stdout
    assert trimesh.load(out, process=False).vertices.shape == (6890, 3)


def test_errors_are_one_line(anny_body, tmp_path, capsys):
    out = str(tmp_path / "x.obj")
    line = _error_line(capsys, "--model", "smpl", "--out", out)
    assert "--model-path" in line and "smpl.is.tue.mpg.de" in line
    line = _error_line(capsys, "--model", "smpl", "--model-path", str(tmp_path / "nowhere"), "--out", out)
    assert "nowhere" in line and "SMPL_NEUTRAL.pkl" in line and "smpl.is.tue.mpg.de" in line
    line = _error_line(capsys, "--shape", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "--out", out)
    assert "7 values" in line and "at most 6" in line
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    line = _error_line(capsys, "--pose-file", str(bad), "--out", out)
    assert str(bad) in line and "not valid JSON" in line
    bad.write_text(json.dumps({"body_pose": {"tail01": [0, 0, 1]}}))
    line = _error_line(capsys, "--pose-file", str(bad), "--out", out)
    assert "unknown joint 'tail01'" in line
    bad.write_text(json.dumps({"body_pose": [[0, 0, 1]] * 5}))
    line = _error_line(capsys, "--pose-file", str(bad), "--out", out)
    assert "15 numbers, expected 23 x 3" in line
    line = _error_line(capsys, "--pose-file", str(tmp_path / "missing.json"), "--out", out)
    assert "missing.json" in line and "does not exist" in line
    line = _error_line(capsys, "--out", str(tmp_path / "mesh.stl"))
    assert ".obj or .ply" in line
    (tmp_path / "junk.npz").write_bytes(b"garbage")
    line = _error_line(capsys, "--pose-file", str(tmp_path / "junk.npz"), "--out", out)
    assert "junk.npz" in line and "not a readable .npz" in line


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_shape_is_refused(anny_body, tmp_path, capsys, value):
    line = _error_line(capsys, "--shape", value, "--out", str(tmp_path / "x.obj"))
    assert "finite" in line


def test_global_orient_turns_the_body(anny_body, tmp_path, capsys):
    """A half turn about y turns the body round (it then faces -z)."""
    outs = {}
    for name, go in (("front", ["0", "0", "0"]), ("back", ["0", "3.14159265", "0"])):
        path = tmp_path / f"{name}.obj"
        assert _run(capsys, "--global-orient", *go, "--out", str(path))[0] == 0
        outs[name] = np.asarray(trimesh.load(path, process=False).vertices)
    front, back = outs["front"], outs["back"]
    # a half turn about the vertical through the root joint: x and z mirror about the root's x and z
    assert np.ptp(back[:, 0] + front[:, 0]) < 1e-4 and np.ptp(back[:, 2] + front[:, 2]) < 1e-4
    assert np.allclose(back[:, 1], front[:, 1], atol=1e-4)


def test_out_of_range_phenotypes_are_refused(anny_body, tmp_path, capsys):
    """Anny would clamp them silently; the CLI names the phenotype, its value, its range and the source."""
    out = str(tmp_path / "x.obj")
    line = _error_line(capsys, "--shape", "0.5", "0.5", "0.5", "1.7", "--out", out)
    assert "--shape" in line and "weight = 1.7" in line and "[0, 1]" in line
    line = _error_line(capsys, "--shape", "0.5", "-0.5", "--out", out)
    assert "age = -0.5" in line and "[-0.3333, 1]" in line
    pose = tmp_path / "pose.json"
    pose.write_text(json.dumps({"shape": [2.0]}))
    line = _error_line(capsys, "--pose-file", str(pose), "--out", out)
    assert str(pose) in line and "'shape'" in line and "gender = 2" in line and "[0, 1]" in line
    assert not (tmp_path / "x.obj").exists()
    # the ends of the ranges are fine
    rc, _, err = _run(capsys, "--shape", "1", "-0.3333333", "0", "1", "0", "1", "--out", out)
    assert rc == 0, err


def test_bad_pose_values_name_the_joint(anny_body, tmp_path, capsys):
    out = str(tmp_path / "x.obj")
    bad = tmp_path / "bad.json"
    rows = [[0.0, 0.0, 0.0]] * 23
    rows[6] = [0.0, None, 0.0]  # JSON null: nan
    bad.write_text(json.dumps({"body_pose": rows}))
    line = _error_line(capsys, "--pose-file", str(bad), "--out", out)
    assert str(bad) in line and "'body_pose' holds nan at number 20 of 69" in line
    assert f"(joint {anny_body.joint_names[7]})" in line and "finite" in line
    np.savez(tmp_path / "bad.npz", pose=np.full((24, 3), np.inf))
    line = _error_line(capsys, "--pose-file", str(tmp_path / "bad.npz"), "--out", out)
    assert "'pose' holds inf at number 1 of 72" in line and f"(joint {anny_body.joint_names[0]})" in line
    np.savez(tmp_path / "short.npz", global_orient=np.zeros(2))
    line = _error_line(capsys, "--pose-file", str(tmp_path / "short.npz"), "--out", out)
    assert "'global_orient' has 2 numbers, expected 1 x 3 = 3" in line
    line = _error_line(capsys, "--global-orient", "0", "nan", "0", "--out", out)
    assert "--global-orient" in line and "finite" in line
