"""Built-in attack plugins, installed as ``advrp2k.attacks``: one method family per file."""
