"""Body coordinates of the two test bodies (Anny and the generated SMPL-format model), once per session."""

from __future__ import annotations

import pytest

from dsrbody.garments.geometry import BodyGeometry


@pytest.fixture(scope="session")
def smpl_body(smpl_dir):
    """The generated SMPL-format model (neutral)."""
    from dsrbody.body.smpl import SMPL

    return SMPL(smpl_dir)


@pytest.fixture(scope="session")
def anny_geometry(anny_body):
    """Garment coordinates of the default Anny mesh."""
    return BodyGeometry.from_model(anny_body)


@pytest.fixture(scope="session")
def smpl_geometry(smpl_body):
    """Garment coordinates of the generated SMPL-format mesh."""
    return BodyGeometry.from_model(smpl_body)


@pytest.fixture(params=["anny", "smpl"])
def geometry(request):
    """Each test body in turn."""
    return request.getfixturevalue(f"{request.param}_geometry")
