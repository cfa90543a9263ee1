"""The ``made-np`` command line (installed as ``made_np.cli``): train, evaluate, sample and inspect.

Commands::

    made-np train       train a MADE (digits by default) and write a run folder
    made-np evaluate    NLL of a checkpoint on a split, single mask and ensemble
    made-np sample      draw samples from a checkpoint (.png grid or .npy array)
    made-np complete    exact completions of partly observed examples, and their marginal likelihood
    made-np impute      fill the missing entries (NaN) of a table, with their predictive standard deviation
    made-np density     the exact density table of a 2-D model against the true table
    made-np masks       dump (and draw) the ordering, degrees and masks of a checkpoint
    made-np data        download and inspect data sets

Exit status (``made-np train --help`` repeats it)::

    0    success
    2    a user error, printed as one line ``Error: ...`` naming the option or file and the
         fix, never a traceback: a bad option or input file, a run folder that cannot be
         written or that another run is writing to, a write that failed (a full disk: the
         last checkpoint is kept), a checkpoint that cannot be resumed
    3    ``train`` stopped by a diverging (non-finite) loss; the last good checkpoint is kept
    130  interrupted with Ctrl-C; ``train`` says what is saved, and ``--resume`` continues it

One module per command group; :mod:`made_np.cli.common` holds the one-line errors and
the shared options. To add a command, write a ``click.command`` in a module of its own
and add it to :func:`cli` below. The math and the training recipe are the library's.
"""
from __future__ import annotations


from made_np import prefer_short_blas_spin, unset_empty_thread_variables

unset_empty_thread_variables()  # OMP_NUM_THREADS= is unset, not passed to libgomp (which warns)
prefer_short_blas_spin()  # the command line's OpenBLAS setting, before NumPy loads

import click  # noqa: E402

from made_np import __version__  # noqa: E402

from .common import Group  # noqa: E402
# commands are imported under other names, so that made_np.cli.<module> stays the module
from .complete import complete as complete_cmd  # noqa: E402
from .data import data as data_group  # noqa: E402
from .evaluate import evaluate_cmd  # noqa: E402
from .impute import impute as impute_cmd  # noqa: E402
from .masks import masks as masks_cmd  # noqa: E402
from .sample import density as density_cmd, sample as sample_cmd  # noqa: E402
from .train import parse_hidden, parse_num_masks, train as train_cmd  # noqa: E402,F401


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100,
                                          "show_default": True, "token_normalize_func": str.lower})
@click.version_option(__version__, "--version", prog_name="made-np", message="%(prog)s %(version)s")
def cli():
    """MADE (Masked Autoencoder for Distribution Estimation, Germain et al. 2015) in NumPy/CuPy.

    Start with `made-np train` (binarized 8x8 digits, about 35 s on two idle CPU cores).
    """


for _command in (train_cmd, evaluate_cmd, sample_cmd, complete_cmd, impute_cmd, masks_cmd, density_cmd, data_group):
    cli.add_command(_command)


def main(argv=None):
    """Console entry point ``made-np`` (and ``python -m made_np``)."""
    return cli.main(args=argv, prog_name="made-np")
