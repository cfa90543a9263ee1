"""A third hostile-input campaign: each test holds a class of input that once did harm (replaced a
device by a file, read a different array than the file holds, dropped a masked array's mask, ...)."""
import os

import numpy as np
import pytest
from conftest import one_line_error, run_cli as run

from made_np import MADE, MADEConfig, save_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """An untrained 6-variable binary model with a bank of 4 masks, saved as a checkpoint."""
    path = tmp_path_factory.mktemp("h3") / "model.npz"
    return save_checkpoint(path, MADE(MADEConfig(D=6, hidden=(8,), num_masks=4)))


def test_outputs_never_replace_a_pipe_or_device(ckpt, tmp_path):
    """A rename onto a FIFO, a socket or /dev/null replaced the node by a regular file (as root:
    /dev/null itself, through ``save_checkpoint('/dev/null', model)``)."""
    from made_np import runfolder

    fifo = tmp_path / "out.npy"
    os.mkfifo(fifo)
    (tmp_path / "link.npz").symlink_to(fifo)
    for args in (("sample", ckpt, "-n", 2, "--out", fifo), ("masks", ckpt, "--out", tmp_path / "link.npz")):
        one_line_error(run(*args), "--out", "not a regular file")
    with pytest.raises(OSError, match="not a regular file") as err:
        with runfolder.atomic_file(fifo, "wb") as f:
            f.write(b"x")
    assert err.value.filename == str(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        save_checkpoint(fifo, MADE(MADEConfig(D=6, hidden=(8,))))
    assert fifo.exists() and not fifo.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.npz", "out.npy"]  # no temporary file left
