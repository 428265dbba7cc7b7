"""dsrbody.testing: helpers that make test data in the exact formats users have.

- :func:`dsrbody.testing.smpl_files.write_smpl_files`: SMPL model files in the official ``.pkl`` layout
  (Python-2 pickle with a chumpy ``shapedirs``) and ``.npz``, plus ``J_regressor_extra.npy``,
  ``J_regressor_h36m.npy`` and ``smpl_mean_params.npz``, with random but body-like content.
- :class:`dsrbody.testing.http_files.FileServer`: a local HTTP server (127.0.0.1, a thread, Range
  requests, connections cut on demand) for the tests of ``dsrbody fetch``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["write_smpl_files"]


def __getattr__(name: str) -> Any:  # lazy: importing dsrbody.testing stays cheap
    if name == "write_smpl_files":
        from dsrbody.testing.smpl_files import write_smpl_files

        return write_smpl_files
    raise AttributeError(f"module 'dsrbody.testing' has no attribute {name!r}")
