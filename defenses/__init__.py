"""Built-in defense plugins, installed as ``advrp2k.defenses``: one per file."""
