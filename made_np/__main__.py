"""``python -m made_np``: the ``made-np`` command line."""
from made_np.cli import main

if __name__ == "__main__":
    main()
