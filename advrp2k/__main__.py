"""``python -m advrp2k``: the same command line as ``advrp2k`` (and what ``torchrun -m advrp2k`` runs)."""
from advrp2k.cli import main

if __name__ == "__main__":
    main()
